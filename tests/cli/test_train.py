"""`python -m interp train`: help, a missing data set, the run folder it writes (checkpoint, config, events),
signals mid-training and during the callbacks, resume=latest, and concurrent runs."""

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from helpers import REPO, run_cli, start_cli


def base_env(root=None):
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if root is not None:
        env["INTERP_DATA_DIR"] = str(root)
    return env


@pytest.mark.slow
def test_offline_missing_data_exits_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    proc = run_cli(
        ["train", f"data.root={empty}", "callbacks=[]", f"runs_dir={tmp_path / 'runs'}"],
        base_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1
    assert str(empty / "MNIST" / "raw") in error_lines[0] and "train-images-idx3-ubyte" in error_lines[0]


def test_cli_help_lists_commands():
    proc = run_cli(["--help"], dict(os.environ), REPO, timeout=300)
    assert proc.returncode == 0 and "train" in proc.stdout and "visualize" in proc.stdout
    proc = run_cli(["train", "--help"], dict(os.environ), REPO, timeout=300)
    assert proc.returncode == 0
    for group in ("model", "data", "trainer", "logger", "callbacks"):
        assert group in proc.stdout


def read_scalars(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for event_file in run_dir.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return out


@pytest.mark.slow
def test_train_subprocess_writes_checkpoint_and_events(tmp_path, tiny_mnist):
    root, _ = tiny_mnist
    runs = tmp_path / "runs"
    args = [
        "train",
        "trainer=fast",
        "trainer.enable_progress_bar=false",
        "callbacks=[]",
        "data.val_size=50",
        f"runs_dir={runs}",
        "experiment=t",
    ]
    proc = run_cli(args, base_env(root), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test accuracy:" in proc.stdout
    (run_dir,) = list((runs / "t").iterdir())
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
    scalars = read_scalars(run_dir)
    for tag in ("train/loss", "train/acc", "val/acc", "test/acc"):
        assert tag in scalars, sorted(scalars)
    assert 0.5 <= scalars["test/acc"][-1] <= 1.0 + 1e-6  # the bars are easy to learn
    # A second run never overwrites the first.
    proc = run_cli(args, base_env(root), cwd=tmp_path)
    assert proc.returncode == 0
    assert len(list((runs / "t").iterdir())) == 2


def _wait_for(pattern_root: Path, pattern: str, timeout: float = 240) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(pattern_root.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"nothing matched {pattern} under {pattern_root} within {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_training_keeps_the_checkpoint_then_resume_latest(tmp_path, tiny_mnist, signum, code):
    root, _ = tiny_mnist
    runs = tmp_path / "runs"
    common = [
        "trainer.enable_progress_bar=false",
        "callbacks=[]",
        "data.val_size=50",
        "data.batch_size=4",
        f"runs_dir={runs}",
        "experiment=r",
        "trainer.max_epochs=40",
    ]
    proc = start_cli(["train", *common], base_env(root), tmp_path)
    last = _wait_for(runs, "r/*/checkpoints/last.ckpt")
    time.sleep(1.0)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: the last checkpoint is {last}" in err
    assert "resume=latest experiment=r" in err and "Traceback" not in err
    assert last.is_file(), "the interrupted run lost its last checkpoint"
    done = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert done < 39

    # another experiment's newer checkpoint is not what resume=latest picks
    other = runs / "other" / "x" / "checkpoints"
    other.mkdir(parents=True)
    (other / "last.ckpt").write_bytes(last.read_bytes())
    proc = run_cli(
        ["train", *common, "trainer.max_epochs=" + str(done + 2), "resume=latest"], base_env(root), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {last}" in proc.stdout
    new_runs = [p for p in (runs / "r").iterdir() if p != last.parents[1]]
    (new_run,) = new_runs
    resumed = torch.load(new_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == done + 1  # epochs are counted from 0: max_epochs = done + 2

    # resuming with another model config names what differs, and leaves no empty run folder
    before = set((runs / "r").iterdir())
    proc = run_cli(["train", *common, "model.hidden=64", "resume=latest"], base_env(root), cwd=tmp_path)
    assert proc.returncode == 2 and "hidden: checkpoint 512, config 64" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and set((runs / "r").iterdir()) == before


@pytest.mark.slow
def test_sigterm_during_the_interpretation_callbacks(tmp_path, tiny_mnist):
    root, _ = tiny_mnist
    runs = tmp_path / "runs"
    args = [
        "trainer.enable_progress_bar=false",
        "callbacks=[featvis]",
        "callbacks.featvis.steps=200000",
        "units=0-3",
        "data.val_size=50",
        f"runs_dir={runs}",
        "experiment=cb",
        "trainer.max_epochs=1",
    ]
    proc = start_cli(["train", *args], base_env(root), tmp_path)
    last = _wait_for(runs, "cb/*/checkpoints/last.ckpt")
    time.sleep(3.0)  # the epoch's checkpoint is written; feature visualization is running
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert last.is_file() and "test accuracy" not in out
    assert not list(last.parents[1].glob("interp/featvis/**/*.png"))


@pytest.mark.slow
def test_concurrent_runs_get_their_own_folders(tmp_path, tiny_mnist):
    root, _ = tiny_mnist
    runs = tmp_path / "runs"
    args = [
        "train",
        "trainer=fast",
        "trainer.enable_progress_bar=false",
        "callbacks=[]",
        "data.val_size=50",
        f"runs_dir={runs}",
        "experiment=same",
        "hydra.run.dir='${unique_dir:${runs_dir}/same/one-stamp}'",
    ]
    env = dict(base_env(root), OMP_NUM_THREADS="1")
    procs = [start_cli([*args, f"seed={i}"], env, tmp_path) for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    folders = sorted(p.name for p in (runs / "same").iterdir())
    assert folders == ["one-stamp", "one-stamp-1", "one-stamp-2"]
    seeds = set()
    for name in folders:
        folder = runs / "same" / name
        seeds.add(OmegaConf.load(folder / "config.yaml").seed)
        assert len(list(folder.glob("events.out.tfevents.*"))) >= 1
        assert sorted(p.name for p in (folder / "checkpoints").iterdir())[-1] == "last.ckpt"
    assert seeds == {0, 1, 2}
