"""Fixtures shared by the test folders: real MNIST, a trained MLP, the face-api weights, a headless
browser, a run made by hand and one trained through the CLI."""

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from helpers import REPO, random_digits, run_cli, small_mlp, train_quick, write_tiny_mnist


def _mnist_root() -> Path | None:
    candidates = [os.environ.get("INTERP_DATA_DIR"), REPO.parent / "shared" / "data", REPO / "data"]
    for c in candidates:
        if c and (Path(c) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST root; in CI its absence is a failure, elsewhere the test is skipped."""
    root = _mnist_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("real MNIST not found: set INTERP_DATA_DIR (CI points it at ../shared/data)")
        pytest.skip("real MNIST not found (set INTERP_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def mnist_small(mnist_root):
    """The first 6,000 real training digits as float [0, 1] and their labels."""
    from interp.data import load_mnist

    x, y = load_mnist(mnist_root, train=True, download=False)
    return x[:6000].float() / 255, y[:6000]


@pytest.fixture()
def tiny_mnist(tmp_path):
    """``(data root, {"train": (images, labels), "t10k": ...})``: a 300 + 100 digit synthetic MNIST
    (:func:`helpers.write_tiny_mnist`) in ``tmp_path / "data"``."""
    data = write_tiny_mnist(tmp_path / "data" / "MNIST" / "raw")
    return tmp_path / "data", data


@pytest.fixture(scope="session")
def trained_mlp(mnist_small):
    from interp.models import MnistMLP

    torch.manual_seed(0)
    x, y = mnist_small
    return train_quick(MnistMLP(), x, y, epochs=2)


FACE_API_MANIFESTS = ("face_recognition_model-weights_manifest.json", "face_expression_model-weights_manifest.json")


def _face_data_root() -> Path | None:
    for c in (os.environ.get("INTERP_DATA_DIR"), REPO.parent / "shared" / "data"):
        if c and all((Path(c) / "face-api" / m).is_file() for m in FACE_API_MANIFESTS):
            return Path(c)
    return None


@pytest.fixture(scope="session")
def face_root() -> Path:
    """A data root holding ``face-api/`` (the face-api.js weights) and ``images/``; in CI its absence
    is a failure, elsewhere the test is skipped."""
    root = _face_data_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("face-api weights not found: set INTERP_DATA_DIR (CI points it at ../shared/data)")
        pytest.skip("face-api weights not found (set INTERP_DATA_DIR or run `make face-weights`)")
    return root


@pytest.fixture(scope="session")
def faceapi_dir(face_root) -> Path:
    """The face-api weights folder (see :func:`face_root`)."""
    return face_root / "face-api"


def browser_or_skip():
    """The :class:`browser.Browser` class; without Chromium (or websocket-client) the test fails in CI and is
    skipped elsewhere."""
    from browser import find_chromium

    missing = []
    if find_chromium() is None:
        missing.append("chromium (run scripts/install_chromium.sh)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        missing.append("the websocket-client package")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("browser tests must run in CI but " + " and ".join(missing) + " is missing")
        pytest.skip("no browser: " + " and ".join(missing) + " missing")
    from browser import Browser

    return Browser


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (1280x900) for the tests of one module."""
    Browser = browser_or_skip()
    with Browser(width=1280, height=900) as b:
        yield b


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A run of the project's MLP made by hand, as ``interp train`` leaves one: ``config.yaml`` (no
    data node: the atlas then needs no data set), ``checkpoints/last.ckpt`` and the top-k result
    the top-k step writes. Nothing is trained."""
    import lightning
    import yaml

    from interp.report import Reporter
    from interp.steps.topk import TopKSettings, topk_examples

    run = tmp_path / "runs" / "mlp" / "2020-01-01_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    model = small_mlp()
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        run / "checkpoints" / "last.ckpt",
    )
    config = {"model": {"_target_": "interp.models.MnistMLP", "hidden": 32}, "data": None}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        topk_examples(model, random_digits(), Reporter(run), "dense_1", TopKSettings(k=4), units=[0, 1, 2])
    assert (run / "interp" / "topk" / "dense_1" / "topk.pt").is_file()
    return run


# The one training of the MNIST MLP through the CLI that the tests share: the cheapest settings that give every
# user what it reads. tests/cli/test_tensorboard_live.py: topk and featvis of units 30-32, the panel of unit 32,
# inversion, the projector of 300 points without t-SNE; tests/atlas/test_atlas_runs.py: the atlas of units 0-5
# with top-k, feature visualization and attribution; tests/cli/test_cli_errors.py and tests/cli/test_visualize.py:
# a checkpoint and its config. The callbacks are the train config's own list (atlas last).
TRAINED_RUN_UNITS = "[0,1,2,3,4,5,30,31,32]"
TRAINED_RUN_ARGS = [
    "trainer=fast",
    "trainer.enable_progress_bar=false",
    "data.subset=3000",
    "units=0-5",
    f"callbacks.topk.units={TRAINED_RUN_UNITS}",
    f"callbacks.featvis.units={TRAINED_RUN_UNITS}",
    "callbacks.featvis.steps=16",
    "callbacks.panel.units=[32]",
    "callbacks.inversion.steps=32",
    "callbacks.attribution.ig_steps=8",
    "+callbacks.attribution.n_check=8",
    "callbacks.projector.n=300",
    "callbacks.projector.tsne=false",
]


@dataclass(frozen=True)
class TrainedRun:
    """One run of ``python -m interp train`` (see :func:`trained_run`)."""

    cwd: Path  # the working folder of the training; ``runs/`` is below it
    runs_dir: Path  # cwd / "runs"
    run_dir: Path  # runs_dir / "mnist_mlp" / <timestamp>
    ckpt: Path  # run_dir / "checkpoints" / "last.ckpt"
    env: dict  # the environment it ran in (INTERP_DATA_DIR set): for further CLI calls
    stdout: str  # what the training printed


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, mnist_root) -> TrainedRun:
    """The MNIST MLP trained once for the whole session by ``python -m interp train`` with every interpretation
    callback (``TRAINED_RUN_ARGS``). Read it, never write into it: a test that needs to change a run, or to run
    the CLI where ``ckpt=latest`` would see new runs, copies it first (``shutil.copytree`` into its tmp_path)."""
    cwd = tmp_path_factory.mktemp("trained_run")
    env = dict(os.environ, INTERP_DATA_DIR=str(mnist_root), PYTHONUNBUFFERED="1")
    env.pop("INTERP_DEBUG", None)
    proc = run_cli(["train", *TRAINED_RUN_ARGS], env, cwd, timeout=600)
    assert proc.returncode == 0, f"train failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    (run_dir,) = [p for p in (cwd / "runs" / "mnist_mlp").iterdir() if p.is_dir()]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and list(run_dir.glob("events.out.tfevents.*")), sorted(run_dir.iterdir())
    return TrainedRun(cwd, cwd / "runs", run_dir, ckpt, env, proc.stdout)
