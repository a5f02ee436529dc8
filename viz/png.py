"""Saving a matplotlib figure as a PNG file, whole or not at all (no torch or numpy needed)."""

import io
from pathlib import Path
from typing import TYPE_CHECKING

from data.files import write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_png(fig: "Figure", path: Path) -> Path:
    """Write the picture through a temporary file of this process: a reader or a crash never meets half of one."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomically(path, buffer.getvalue())
    return path
