import os
from pathlib import Path

import pytest
import torch

from helpers import REPO


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


def train_quick(model, x, y, epochs=2, batch=128, lr=1e-3, seed=0):
    """Train ``model`` for a few seconds with a plain loop (for tests that need trained weights)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


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
