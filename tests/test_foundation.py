"""Foundation: the MNIST data module, the MLP, the Hydra CLI, checkpoints, resume."""

import gzip
import os
import signal
import struct
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from helpers import REPO, run_cli, start_cli
from interp.data import MNISTDataModule, load_mnist
from interp.errors import DataNotFoundError
from interp.models import MnistMLP


def write_idx(raw: Path, n_train=300, n_test=100, gz=False):
    """Write a small MNIST in the IDX format torchvision reads (magic 2051/2049, big-endian)."""
    raw.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.arange(n) % 10
        images = torch.zeros(n, 28, 28, dtype=torch.uint8)
        for i in range(n):  # a bright bar whose row encodes the label, plus noise
            images[i, 2 + 2 * int(labels[i]) : 4 + 2 * int(labels[i]), 4:24] = 255
        images = (images.int() + torch.randint(0, 30, (n, 28, 28), generator=g)).clamp(0, 255).to(torch.uint8)
        img_bytes = struct.pack(">IIII", 2051, n, 28, 28) + images.numpy().tobytes()
        lbl_bytes = struct.pack(">II", 2049, n) + labels.to(torch.uint8).numpy().tobytes()
        for name, data in ((f"{prefix}-images-idx3-ubyte", img_bytes), (f"{prefix}-labels-idx1-ubyte", lbl_bytes)):
            if gz:
                with gzip.open(raw / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (raw / name).write_bytes(data)
        out[prefix] = (images, labels)
    return out


@pytest.fixture()
def tiny_mnist(tmp_path):
    data = write_idx(tmp_path / "data" / "MNIST" / "raw")
    return tmp_path / "data", data


def base_env(root=None):
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if root is not None:
        env["INTERP_DATA_DIR"] = str(root)
    return env


# --- data ---------------------------------------------------------------------------------------


def test_datamodule_reads_idx_files(tiny_mnist):
    root, data = tiny_mnist
    dm = MNISTDataModule(root=str(root), batch_size=32, val_size=50, download=False)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 300 and len(dm.test_set) == 100
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    full = dm.interp_dataset("train")
    img, label = full[7]
    torch.testing.assert_close(img, data["train"][0][7].float().unsqueeze(0) / 255)
    assert int(label) == 7
    images, labels = full.__getitems__([3, 5])
    assert images.shape == (2, 1, 28, 28) and labels.tolist() == [3, 5]


def test_datamodule_env_var_and_split_is_seeded(tiny_mnist, monkeypatch):
    root, _ = tiny_mnist
    monkeypatch.setenv("INTERP_DATA_DIR", str(root))
    a, b = MNISTDataModule(val_size=50), MNISTDataModule(val_size=50)
    a.setup(), b.setup()
    assert torch.equal(a.val_set.images, b.val_set.images)
    c = MNISTDataModule(val_size=50, seed=99)
    c.setup()
    assert not torch.equal(a.val_set.images, c.val_set.images)


def test_missing_data_raises_named_error(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path / "nothing", download=False)


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


# --- model --------------------------------------------------------------------------------------


def test_model_shape_names_and_normalization():
    model = MnistMLP().eval()
    modules = dict(model.named_modules())
    assert isinstance(modules["dense_1"], torch.nn.Linear) and modules["dense_1"].out_features == 512
    assert modules["dense_2"].in_features == 512 and modules["dense_3"].out_features == 10
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    seen = {}
    modules["dense_1"].register_forward_pre_hook(lambda m, inp: seen.setdefault("in", inp[0]))
    model(x)
    torch.testing.assert_close(seen["in"], ((x - 0.1307) / 0.3081).flatten(1))


def test_checkpoint_reload_gives_identical_predictions(tmp_path, tiny_mnist):
    import lightning.pytorch as L

    root, _ = tiny_mnist
    dm = MNISTDataModule(root=str(root), batch_size=32, val_size=50, download=False)
    model = MnistMLP()
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(model, dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    again = MnistMLP.load_from_checkpoint(path).eval()
    x = torch.rand(16, 1, 28, 28)
    assert torch.equal(model.eval()(x), again(x))
    assert again.hparams.hidden == 512


# --- CLI ------------------------------------------------------------------------------------------


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


@pytest.mark.slow
def test_one_epoch_on_real_mnist_reaches_95_percent(mnist_root):
    import lightning.pytorch as L

    L.seed_everything(0, verbose=False)
    dm = MNISTDataModule(root=str(mnist_root), download=False)
    model = MnistMLP()
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, dm)
    acc = trainer.test(model, dm, verbose=False)[0]["test/acc"]
    assert len(dm.test_set) == 10000 and len(dm.train_set) == 55000 and len(dm.val_set) == 5000
    assert acc >= 0.95, acc
