"""Pictures of what a trained model does: attention heatmaps, per-query bar
charts and a self-contained HTML explorer. `python attention.py` makes them."""
