"""Pictures of a run, drawn with matplotlib (imported only when drawing), and saving a figure as a PNG."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from data.files import write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def png_mark(by: str) -> str:
    """The Software field of a picture save_png wrote for the command `by`: the pictures that command replaces."""
    return f"smallgpt {by}"


def save_png(fig: "Figure", path: Path, by: str) -> Path:
    """Write the picture, marked as drawn by the command `by` (compare.py, ...), through a temporary file of this
    process: a reader or a crash never meets half of one."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": png_mark(by)})
    write_atomically(path, buffer.getvalue())
    return path


def drawn_by(by: str) -> Callable[[Path], bool]:
    """The check of whether a path is a picture that save_png wrote for the command `by`: the only pictures that
    command replaces."""

    def drawn(path: Path) -> bool:
        from PIL import Image

        try:
            with Image.open(path) as image:
                return image.info.get("Software") == png_mark(by)
        except (OSError, ValueError):  # not a picture at all
            return False

    return drawn


def plot_loss(rows: list[dict], path: Path) -> None:
    """loss.png: train and val loss against step, the best val point marked."""
    from matplotlib.figure import Figure

    batches = [r for r in rows if r["kind"] == "batch"]
    evals = [r for r in rows if r["kind"] == "eval"]
    fig = Figure(figsize=(7, 4.2), dpi=100, layout="tight")
    ax = fig.subplots()
    if batches:
        ax.plot([r["step"] for r in batches], [r["train_loss"] for r in batches],
                color="tab:blue", alpha=0.25, linewidth=0.8, label="train (one batch)")
    if evals:
        steps = [r["step"] for r in evals]
        ax.plot(steps, [r["train_loss"] for r in evals], "o-", color="tab:blue", markersize=3, label="train")
        ax.plot(steps, [r["val_loss"] for r in evals], "o-", color="tab:orange", markersize=3, label="val")
        best = min(evals, key=lambda r: r["val_loss"])
        ax.plot([best["step"]], [best["val_loss"]], "*", color="tab:red", markersize=14,
                label=f"best val {best['val_loss']:.4f} (step {best['step']})")
    ax.set(xlabel="step", ylabel="loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, path, "train.py")


def compare_runs(runs: dict[str, list[dict]], path: Path, by: str) -> Path:
    """One PNG of several runs' losses (log.jsonl rows by run name): the validation loss at each evaluation, and each
    logged batch's training loss faintly, against the tokens seen (left) and against the seconds of training (right)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), dpi=100, layout="constrained")
    by_tokens, by_time = fig.subplots(1, 2, sharey=True)
    for i, (name, rows) in enumerate(runs.items()):
        color = f"C{i % 10}"
        batches = [r for r in rows if r["kind"] == "batch"]
        evals = [r for r in rows if r["kind"] == "eval"]
        for ax, x in ((by_tokens, "tokens"), (by_time, "elapsed_s")):
            ax.plot([r[x] for r in batches], [r["train_loss"] for r in batches], color=color, alpha=0.2, linewidth=0.7)
            ax.plot([r[x] for r in evals], [r["val_loss"] for r in evals], "o-", color=color, markersize=3,
                    label=(f"{name}: val {evals[-1]['val_loss']:.4f}" if evals else name).replace("$", r"\$"))
    by_tokens.set(xlabel="tokens seen", ylabel="loss (nats per token): val (dots), train (faint)")
    by_time.set_xlabel("seconds of training (evaluation included)")
    for ax in (by_tokens, by_time):
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=8)
    return save_png(fig, path, by)
