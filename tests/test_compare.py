"""python compare.py: two runs' logs side by side, in a table and one picture."""
import json

from PIL import Image

from helpers import assert_one_line_error, run_command, run_script
from training.metrics_log import read_rows


def test_two_runs_in_a_table_and_a_picture(trained_out, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    lines = (trained_out / "log.jsonl").read_text().splitlines(keepends=True)
    (other / "log.jsonl").write_text("".join(lines[: len(lines) // 2]))  # the same run, stopped halfway
    result = run_script("compare.py", f"--runs={trained_out}", f"--runs={other}", f"--plot={tmp_path / 'both.png'}")
    printed = result.stdout.splitlines()
    assert len(printed) == 4 and printed[-1] == f"wrote {tmp_path / 'both.png'}"
    for line, run in zip(printed[1:3], (trained_out, other)):  # name, steps, tokens, seconds, last val loss
        rows = [json.loads(row) for row in (run / "log.jsonl").read_text().splitlines()]
        last, val = rows[-1], [f"{r['val_loss']:.4f}" for r in rows if r["kind"] == "eval"] or ["-"]
        assert line.split() == [str(run), f"{last['step']:,}", f"{last['tokens']:,}", f"{last['elapsed_s']:.1f}",
                                val[-1]]
    assert printed[1].split()[1:] != printed[2].split()[1:]
    assert Image.open(tmp_path / "both.png").size == (1200, 450)  # the two panels


def test_a_missing_run_or_a_picture_not_png_is_one_line(trained_out, tmp_path):
    assert_one_line_error(run_command("compare.py", f"--runs={tmp_path / 'nope'}", f"--plot={tmp_path / 'c.png'}"),
                          f"{tmp_path / 'nope' / 'log.jsonl'} not found; give the out_dir of a train.py run")
    assert_one_line_error(run_command("compare.py", f"--runs={trained_out}", f"--plot={tmp_path / 'c.jpg'}"),
                          "is written as a PNG picture; give a file name ending in .png")
    (tmp_path / "notes.txt").write_text("notes")
    for runs in ("", tmp_path / "notes.txt"):
        assert_one_line_error(run_command("compare.py", f"--runs={runs}", f"--plot={tmp_path / 'c.png'}"),
                              f"{str(runs)!r} in --runs is not a folder; give the out_dir of a train.py run")
    for again in (trained_out, f"{trained_out}/", trained_out / ".." / trained_out.name):  # the same run, named anew
        assert_one_line_error(run_command("compare.py", f"--runs={trained_out}", f"--runs={again}",
                                          f"--plot={tmp_path / 'c.png'}"), f"{str(again)!r} is in --runs twice")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    before = (trained_out / "loss.png").read_bytes()
    assert_one_line_error(run_command("compare.py", f"--runs={trained_out}", f"--plot={trained_out / 'loss.png'}"),
                          f"{trained_out / 'loss.png'} is the run's own loss.png; write the comparison elsewhere")
    assert (trained_out / "loss.png").read_bytes() == before


def test_damaged_log_rows_are_skipped_like_torn_ones(trained_out, tmp_path):
    rows = (trained_out / "log.jsonl").read_bytes().splitlines(keepends=True)
    damaged = [b"\xff\n", b"[1]\n", b'"text"\n', b'{"kind": "eval"}\n', b'{"kind": ["eval"]}\n',
               b'{"kind": "batch", "step": null, "tokens": 1, "elapsed_s": 0.5, "train_loss": 2.0}\n',
               # train.py stops before it would log a loss that is not finite
               b'{"kind": "eval", "step": 3, "tokens": 1, "elapsed_s": 0.5, "val_loss": NaN}\n',
               b'{"kind": "batch", "step": 3, "tokens": 1, "elapsed_s": -Infinity, "train_loss": 2.0}\n',
               b'{"kind": "eval", "step": 3, "tokens": 1%s, "elapsed_s": 0.5, "val_loss": 2.0}\n' % (b"0" * 400),
               b'{"kind": "eval", "st']
    (tmp_path / "log.jsonl").write_bytes(rows[0] + b"".join(damaged[:-1]) + b"".join(rows[1:]) + damaged[-1])
    assert read_rows(tmp_path / "log.jsonl") == read_rows(trained_out / "log.jsonl") == \
        [json.loads(row) for row in rows]
    run_script("compare.py", f"--runs={tmp_path}", f"--plot={tmp_path / 'c.png'}")


def test_a_run_named_with_dollars_is_drawn_as_named_not_as_math(tmp_path):
    from viz.loss_plot import compare_runs
    from viz.maps import drawable

    rows = [{"kind": "eval", "step": s, "tokens": 100 * s, "elapsed_s": s, "val_loss": 3.0 - s, "train_loss": 3.0 - s}
            for s in (1, 2)]
    drawn = compare_runs({"r$^$x": rows, "plain": rows}, tmp_path / "c.png", "compare.py")  # mathtext would raise
    assert drawn.stat().st_size > 0
    assert drawable(["cost $5 or $6"])[0] == [r"cost \$5 or \$6"]


def test_a_picture_compare_py_did_not_write_is_never_replaced(trained_out, attention_run, tmp_path):
    mine = tmp_path / "mine.png"
    Image.new("RGB", (4, 4)).save(mine)  # a user's own picture, of the name given
    run = tmp_path / "run"
    run.mkdir()
    (run / "loss.png").write_bytes((trained_out / "loss.png").read_bytes())  # a run's, outside its folder
    for picture in (mine, attention_run / "heatmaps.png", run / "loss.png"):  # the user's, other commands'
        before = picture.read_bytes()
        assert_one_line_error(run_command("compare.py", f"--runs={trained_out}", f"--plot={picture}"),
                              f"plot={picture} is a picture compare.py did not write, which it never replaces")
        assert_one_line_error(run_command("bench.py", "recipe", f"--plot={picture}"),
                              f"plot={picture} is a picture bench.py did not write, which it never replaces")
        assert picture.read_bytes() == before
    ours = tmp_path / "compare.png"
    for _ in range(2):  # its own picture, drawn again
        run_script("compare.py", f"--runs={trained_out}", f"--plot={ours}")
    assert Image.open(ours).info["Software"] == "smallgpt compare.py"
    for link, target in ((tmp_path / "link.png", ours), (tmp_path / "dangling.png", tmp_path / "gone.png")):
        link.symlink_to(target)  # even to its own picture: the picture would take the link's place
        assert_one_line_error(run_command("compare.py", f"--runs={trained_out}", f"--plot={link}"),
                              f"plot: {link} is a symbolic link, which is never replaced")
        assert link.is_symlink() and link.readlink() == target
