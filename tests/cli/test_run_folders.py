"""Run folders (interp.runs): ``make_run_dir`` never gives one folder twice, ``find_checkpoint("latest")``
stays in its experiment, and a failed run removes only the folder it made and only while it holds nothing
but bookkeeping."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from helpers import one_line
from interp.errors import InterpError


def test_make_run_dir_is_atomic_under_contention(tmp_path):
    from interp.runs import make_run_dir

    stamp = "2026-11-30_12-00-00"
    barrier = threading.Barrier(8)
    made: list[Path] = []
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            made.append(make_run_dir(tmp_path / "runs" / "exp", stamp))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = sorted(p.name for p in made)
    assert len(set(names)) == 8
    assert set(names) == {stamp, *(f"{stamp}-{i}" for i in range(1, 8))}
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)
    (tmp_path / "runs" / "exp" / stamp / "keep.txt").write_text("old run")
    again = make_run_dir(tmp_path / "runs" / "exp", stamp)
    assert again.name == f"{stamp}-8"
    with pytest.raises(InterpError, match="plain name"):
        make_run_dir(tmp_path, "../escape")


def _touch_ckpt(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))
    return path


def test_find_checkpoint_latest_stays_in_its_experiment(tmp_path):
    from interp.runs import find_checkpoint

    runs = tmp_path / "runs"
    now = time.time()
    mine = _touch_ckpt(runs / "mnist_mlp" / "t1" / "checkpoints" / "last.ckpt", now - 100)
    _touch_ckpt(runs / "mnist_mlp" / "t0" / "checkpoints" / "last.ckpt", now - 200)
    other = _touch_ckpt(runs / "mnist_cnn" / "t2" / "checkpoints" / "last.ckpt", now)
    assert find_checkpoint("latest", runs) == str(other)
    assert find_checkpoint("latest", runs, experiment="mnist_mlp") == str(mine)
    assert find_checkpoint("latest", runs, exclude=runs / "mnist_mlp" / "t1", experiment="mnist_mlp").endswith(
        "t0/checkpoints/last.ckpt"
    )
    with pytest.raises(InterpError, match="no checkpoint found for experiment 'vgg'") as exc:
        find_checkpoint("latest", runs, experiment="vgg")
    one_line(exc)
    with pytest.raises(InterpError, match="is a folder"):
        find_checkpoint(str(runs / "mnist_mlp" / "t1"), runs)


def test_remove_failed_run_removes_only_what_this_process_made(tmp_path):
    from interp.runs import created_here, make_run_dir, remove_failed_run

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("x: 1")
    assert not created_here(mine) and not remove_failed_run(mine) and (mine / "config.yaml").is_file()

    run = make_run_dir(tmp_path / "runs" / "exp", "stamp")
    assert created_here(run) and created_here(tmp_path / "runs") and not created_here(tmp_path)
    (run / ".hydra").mkdir()
    for name in ("config.yaml", ".hydra/config.yaml", ".hydra/overrides.yaml", "cli.log"):
        (run / name).write_text("bookkeeping")
    assert remove_failed_run(run)
    assert not (tmp_path / "runs").exists() and tmp_path.is_dir(), "the parents made for the run go too"


@pytest.mark.parametrize("extra", ["events.out.tfevents.1", "checkpoints/last.ckpt", "interp/x.png", "user.txt"])
def test_remove_failed_run_keeps_a_run_holding_anything_else(tmp_path, extra):
    from interp.runs import make_run_dir, remove_failed_run

    run = make_run_dir(tmp_path / "runs", "stamp")
    (run / "config.yaml").write_text("x: 1")
    (run / extra).parent.mkdir(parents=True, exist_ok=True)
    (run / extra).write_text("kept")
    assert not remove_failed_run(run)
    assert (run / extra).read_text() == "kept" and (run / "config.yaml").is_file()


def test_remove_failed_run_keeps_a_folder_replaced_since(tmp_path):
    """A folder removed and made again by someone else is not the folder this process created."""
    from interp.runs import make_run_dir, remove_failed_run

    run = make_run_dir(tmp_path, "stamp")
    run.rmdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere").rename(run)
    assert not remove_failed_run(run) and run.is_dir()


@pytest.mark.parametrize("with_summary", [False, True])
def test_an_events_file_counts_as_a_result_only_when_it_holds_a_summary(tmp_path, with_summary):
    """A run that failed right after its logger opened (the events file holds its header only) is
    removed; one that logged anything stays."""
    from torch.utils.tensorboard import SummaryWriter

    from interp.runs import make_run_dir, remove_failed_run

    run = make_run_dir(tmp_path / "runs", "stamp")
    (run / "config.yaml").write_text("x: 1")
    writer = SummaryWriter(str(run))
    if with_summary:
        writer.add_scalar("loss", 1.0, 0)
    writer.close()
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert remove_failed_run(run) is not with_summary
    assert run.exists() is with_summary
