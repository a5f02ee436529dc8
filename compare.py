"""Compare training runs: their loss curves in one picture, against tokens and against time.

    python compare.py --runs=out-classic --runs=out-shakespeare-char [--plot=compare.png]

Each run is an out_dir with the log.jsonl that train.py writes.
"""

import config.interrupt  # noqa: F401  first: a Ctrl-C while torch loads is one line

from pathlib import Path

from config.errors import UserError, run_cli
from config.outputs import check_output, check_replaceable
from config.settings import CompareConfig, read_config
from training.checkpoint import RUN_FILES
from training.metrics_log import read_rows
from viz.loss_plot import compare_runs, drawn_by


def main(argv: list[str]) -> None:
    cfg = read_config(CompareConfig, argv)
    plot = check_output(cfg.plot, "plot", folder=False)
    if plot.name in RUN_FILES and (plot.parent / "log.jsonl").is_file():  # loss.png: train.py's, redrawn each eval
        raise UserError(f"{plot} is the run's own {plot.name}; write the comparison elsewhere, e.g. --plot=compare.png")
    check_replaceable(plot, "plot", "a picture compare.py", drawn_by("compare.py"))
    runs = {}
    for out_dir in cfg.runs:
        log = Path(out_dir) / "log.jsonl"
        if not out_dir.strip() or Path(out_dir).is_file():
            raise UserError(f"{out_dir!r} in --runs is not a folder; give the out_dir of a train.py run")
        if Path(out_dir).resolve() in {Path(run).resolve() for run in runs}:  # its second curve would hide the first
            raise UserError(f"{out_dir!r} is in --runs twice; give each run once")
        runs[out_dir] = read_rows(log)  # none when there is no log
        if not runs[out_dir]:
            what = "holds no logged step" if log.is_file() else "not found"
            raise UserError(f"{log} {what}; give the out_dir of a train.py run")
    print(f"{'run':<32} {'steps':>7} {'tokens':>13} {'seconds':>9} {'last val loss':>14}")
    for name, rows in runs.items():
        last, evals = rows[-1], [r for r in rows if r["kind"] == "eval"]
        val = f"{evals[-1]['val_loss']:.4f}" if evals else "-"
        print(f"{name:<32} {last['step']:>7,} {last['tokens']:>13,} {last['elapsed_s']:>9.1f} {val:>14}")
    print(f"wrote {compare_runs(runs, plot, 'compare.py')}")


if __name__ == "__main__":
    run_cli(main)
