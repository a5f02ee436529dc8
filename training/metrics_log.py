"""out_dir/log.jsonl: the run's losses, one JSON object per line, appended as training goes."""
from __future__ import annotations

import json
from pathlib import Path

from data.files import write_atomically


def read_rows(path: Path) -> list[dict]:
    """Every whole row of a log; a line torn by a crash is skipped."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class MetricsLog:
    """Rows of {"kind": "batch" | "eval", "step", "tokens", "elapsed_s", "lr", losses...}.

    A fresh run starts an empty log. A resumed run keeps only the rows up to
    the checkpoint's step, so steps repeated after a crash appear once.
    """

    def __init__(self, path: Path, resume_step: int | None):
        kept = [r for r in read_rows(path) if r["step"] <= resume_step] if resume_step is not None else []
        write_atomically(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self.path = path
        self.rows = kept

    def append(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:  # closed at once: in the OS's hands, a killed process loses nothing
            f.write(json.dumps(row) + "\n")
