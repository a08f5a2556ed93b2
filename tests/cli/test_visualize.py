"""`python -m interp visualize` end to end: checkpoints, sweeps, VGGFace2 with random weights."""

import os
import shutil

import pytest

from helpers import run_cli as cli


@pytest.fixture(scope="module")
def trained_copy(trained_run, tmp_path_factory):
    """``(cwd, env)``: a folder holding a copy of the shared trained run's ``runs/`` (tests/conftest.py); these
    tests write their runs next to it, and ``ckpt=latest`` finds its checkpoint."""
    cwd = tmp_path_factory.mktemp("vis")
    shutil.copytree(trained_run.runs_dir, cwd / "runs", symlinks=True)
    return cwd, trained_run.env


@pytest.mark.slow
def test_visualize_checkpoint_panel_and_attribution(trained_copy):
    cwd, env = trained_copy
    proc = cli(["visualize", "ckpt=latest", "layer=dense_1", "units=32", "steps=64"], env, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((cwd / "runs" / "visualize").iterdir())
    assert (run / "interp" / "panel" / "dense_1" / "unit_032.png").is_file()
    assert (run / "interp" / "attribution" / "dense_1" / "unit_032.png").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    assert "make tensorboard" in proc.stdout and str(run / "interp") in proc.stdout


@pytest.mark.slow
def test_visualize_multirun_sweep(trained_copy):
    cwd, env = trained_copy
    proc = cli(
        ["visualize", "-m", "ckpt=latest", "units=30,31", "steps=16", "callbacks=[panel]", "experiment=sweep"], env, cwd
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    panels = sorted(p.name for p in (cwd / "runs" / "sweep").glob("multirun_*/*/interp/panel/dense_1/*.png"))
    assert panels == ["unit_030.png", "unit_031.png"]


@pytest.mark.slow
def test_visualize_vggface2_random_weights(tmp_path):
    from PIL import Image

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    folder = tmp_path / "faces"
    folder.mkdir()
    from interp.data import default_face_image_path

    for i in range(3):
        Image.open(default_face_image_path()).rotate(10 * i).save(folder / f"face_{i}.png")
    proc = cli(
        [
            "visualize",
            "preset=vggface2",
            "model.weights=random",
            "size=64",
            "octaves=2",
            "steps_per_octave=2",
            "steps=2",
            "units=[0,1]",
            f"data_dir={folder}",
            "callbacks=[dream,featvis,topk]",
        ],
        env,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOM weights" in proc.stdout
    (run,) = list((tmp_path / "runs" / "visualize").iterdir())
    for rel in ("dream/layer3.png", "featvis/layer3/unit_001.png", "topk/layer3/unit_000.png"):
        assert (run / "interp" / rel).is_file(), rel


def test_visualize_without_weights_or_subject_explains(tmp_path):
    env = dict(os.environ)
    proc = cli(["visualize", "model=vggface2"], env, tmp_path, timeout=300)
    assert proc.returncode == 2 and "resnet50_ft_weight.pkl" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(["visualize"], env, tmp_path, timeout=300)
    assert proc.returncode == 2 and "ckpt=" in proc.stderr


@pytest.mark.slow
def test_visualize_on_two_processes_writes_the_same_bytes(trained_copy):
    """devices=2: the units (and the data to mine) are split across two gloo processes; rank zero
    gathers and writes. Every PNG equals the one-process run's, byte for byte."""
    import torch

    from interp.records import read_record

    cwd, env = trained_copy
    env = dict(env, OMP_NUM_THREADS="1")
    args = [
        "visualize",
        "ckpt=latest",
        "callbacks=[topk,featvis,panel,attribution]",
        "units=0-4",
        "steps=16",
        "views=[plain]",
        "callbacks.attribution.ig_steps=8",
    ]
    runs = {}
    for devices in (1, 2):
        proc = cli([*args, f"devices={devices}", f"experiment=devices{devices}"], env, cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (runs[devices],) = list((cwd / "runs" / f"devices{devices}").iterdir())
    one = sorted(p.relative_to(runs[1]) for p in runs[1].rglob("interp/**/*.png"))
    two = sorted(p.relative_to(runs[2]) for p in runs[2].rglob("interp/**/*.png"))
    assert one == two and len(one) == 5 * 5 + 1  # topk (top and bottom), featvis, panel, attribution; all
    for rel in one:
        assert (runs[1] / rel).read_bytes() == (runs[2] / rel).read_bytes(), rel
    a = read_record(runs[1] / "interp/featvis/dense_1/featvis.pt")
    b = read_record(runs[2] / "interp/featvis/dense_1/featvis.pt")
    assert torch.equal(a.images["plain"], b.images["plain"]) and a.units == list(range(5))
