"""The atlas of real training runs, the MLP's and the CNN's, built by the `Atlas` callback of
`python -m interp train` and opened in headless Chromium: no console errors, every image loaded,
every link resolves, screenshots not blank."""

from __future__ import annotations

import os

import pytest
from browser import check_page

from helpers import run_cli

pytestmark = pytest.mark.slow

# The CNN run's settings (the MLP's are the shared run's: TRAINED_RUN_ARGS in tests/conftest.py).
COMMON = [
    "trainer=fast",
    "trainer.enable_progress_bar=false",
    "data.subset=2000",
    "data.val_size=200",
    "callbacks=[topk,featvis,attribution,atlas]",
    "callbacks.featvis.steps=16",
    "callbacks.attribution.ig_steps=8",
    "+callbacks.attribution.n_check=8",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_root, trained_run):
    """The atlas index of one short MLP run (the session's shared ``trained_run``, tests/conftest.py: it trains
    with the atlas among its callbacks) and of one short CNN run, trained here: the shared run is the MLP's."""
    work = tmp_path_factory.mktemp("atlas_runs")
    env = dict(os.environ, INTERP_DATA_DIR=str(mnist_root), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2")
    proc = run_cli(["train", "model=cnn", "units=0-5", *COMMON, "experiment=cnn"], env, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((work / "runs" / "cnn").iterdir())
    out = {"mlp": trained_run.run_dir / "atlas" / "index.html", "cnn": run / "atlas" / "index.html"}
    assert all(index.is_file() for index in out.values()), out
    return out


@pytest.mark.parametrize(("model", "layer"), [("mlp", "dense_1"), ("cnn", "conv2")])
def test_atlas_of_a_training_run_in_the_browser(runs, browser, model, layer):
    index = runs[model]
    root = index.parent
    check_page(browser, index, root, min_images=0)
    check_page(browser, root / layer / "index.html", root, min_images=6)
    unit_page = check_page(browser, root / layer / "unit_0003.html", root, min_images=10)
    assert f"{layer}" in unit_page.title
    # the unit's activation over the data set, as an inline SVG histogram
    assert browser.evaluate("document.querySelectorAll('svg.hist').length") == 1
