"""Weights & Biases logging; wandb is imported only when wandb_log is on.

wandb reads WANDB_MODE itself: WANDB_MODE=offline writes the run under
./wandb (or WANDB_DIR) for a later `wandb sync`.
"""
from __future__ import annotations

import dataclasses
import html
from pathlib import Path

from config.errors import UserError
from config.settings import TrainConfig


class WandbLog:
    def __init__(self, cfg: TrainConfig, resume_step: int | None):
        try:
            import wandb
        except ImportError:
            raise UserError("wandb_log=true needs wandb: pip install wandb") from None
        self.wandb = wandb
        self.run = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=dataclasses.asdict(cfg))
        if resume_step is not None:
            self.run.summary["resumed_from_step"] = resume_step

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(metrics, step=step)

    def log_sample(self, step: int, text: str) -> None:
        self.run.log({"sample": self.wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step=step)

    def log_image(self, step: int, key: str, path: Path) -> None:
        self.run.log({key: self.wandb.Image(str(path))}, step=step)

    def finish(self) -> None:
        self.run.finish()
