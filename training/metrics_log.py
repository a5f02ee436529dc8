"""The run's records: out_dir/log.jsonl, one JSON object per line appended as training goes, and, with
wandb_log, Weights & Biases. wandb is imported only then; it reads WANDB_MODE itself (offline writes the
run under ./wandb, or WANDB_DIR, for a later `wandb sync`)."""

import contextlib
import dataclasses
import html
import json
import math
from pathlib import Path

from config.errors import UserError
from config.settings import TrainConfig
from data.files import write_atomically


ROW_KEYS = {"batch": {"step", "tokens", "elapsed_s", "train_loss"}, "eval": {"step", "tokens", "elapsed_s", "val_loss"}}


def read_rows(path: Path) -> list[dict]:
    """Every whole row of a log, its kind's keys all finite numbers (the step an int); a line torn by a crash, or
    damaged otherwise, is skipped."""
    rows = []
    for line in path.read_bytes().splitlines() if path.is_file() else []:
        # not JSON, not UTF-8, an unhashable kind, a key missing, brackets nested past Python's recursion limit, an
        # integer past float's range
        with contextlib.suppress(ValueError, TypeError, KeyError, RecursionError, OverflowError):
            row = json.loads(line)
            values = [row[key] for key in ROW_KEYS[row["kind"]]]
            if all(type(v) in (int, float) and math.isfinite(v) for v in values) and type(row["step"]) is int:
                rows.append(row)
    return rows


def start_wandb(cfg: TrainConfig, resume_step: int | None):
    """The wandb run that MetricsLog logs to (with wandb_log): started before a run replaces an earlier one, so
    that wandb refusing to start leaves that one as it was."""
    try:
        import wandb
    except ImportError:
        raise UserError("wandb_log=true needs wandb: pip install wandb") from None
    try:
        run = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name or Path(cfg.out_dir).resolve().name,
                         config=dataclasses.asdict(cfg))
    except wandb.errors.Error as e:  # no API key, no network, ...
        raise UserError(f"wandb could not start ({str(e).splitlines()[0]}); run `wandb login`, "
                        f"or set WANDB_MODE=offline") from None
    except ValueError as e:  # pydantic's ValidationError: a setting from the environment, e.g. WANDB_MODE=OFFLINE
        details = e.errors() if hasattr(e, "errors") else []
        refused = "; ".join(f"{'.'.join(map(str, d['loc']))}={d.get('input')!r}: {d['msg']}" for d in details)
        raise UserError(f"wandb refused its settings ({refused or str(e).splitlines()[0]}); check the WANDB_ "
                        f"variables in the environment, e.g. WANDB_MODE=offline") from None
    if resume_step is not None:
        run.summary["resumed_from_step"] = resume_step
    return run


class MetricsLog:
    """Rows of {"kind": "batch" | "eval", "step", "tokens", "elapsed_s", "lr", losses...}. A resumed run keeps the rows
    up to the checkpoint's step, so steps run again appear once (unless it trains none: `rerun`), and an evaluation it
    makes again (`evaluation_owed`) too; dropped_to is the last step it dropped, and lost says that a resumed run found
    no log (deleted, or another folder's checkpoint copied in)."""

    def __init__(self, path: Path, resume_step: int | None, wandb_run=None, rerun: bool = True,
                 evaluation_owed: bool = False):
        self.path, self.wandb = path, wandb_run  # wandb: start_wandb's, with wandb_log
        self.lost = bool(resume_step) and not path.exists()
        rows = read_rows(path) if resume_step is not None else []
        rows = [r for r in rows if not (evaluation_owed and r["kind"] == "eval" and r["step"] == resume_step)]
        self.rows = [r for r in rows if not rerun or r["step"] <= resume_step]
        self.dropped_to = max((r["step"] for r in rows if rerun and r["step"] > resume_step), default=None)
        write_atomically(path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())

    def append(self, row: dict) -> None:
        """Add a row; wandb gets its metrics as "kind/name"."""
        self.rows.append(row)
        with open(self.path, "a") as f:  # closed at once: in the OS's hands, a killed process loses nothing
            f.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self.wandb.log({f"{row['kind']}/{k}": v for k, v in row.items()
                            if k not in ("kind", "step", "tokens", "elapsed_s") and v is not None}, step=row["step"])

    def log_media(self, step: int, sample: str, images: dict[str, Path]) -> None:
        """A sample of text and images, to wandb."""
        import wandb

        self.wandb.log({"sample": wandb.Html(f"<pre>{html.escape(sample)}</pre>"),
                        **{key: wandb.Image(str(path)) for key, path in images.items()}}, step=step)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
