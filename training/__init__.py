"""What train.py needs besides the network and the data: model, optimizer, checkpoints, schedule, processes, logs."""
