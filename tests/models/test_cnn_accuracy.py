"""`python -m interp train model=cnn`: the MNIST CNN reaches its test accuracy (>= 99.2%) with the
project's own settings, trained end to end by the CLI on the real MNIST."""

from __future__ import annotations

import os
import re

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow


def test_cnn_reaches_its_accuracy(tmp_path, mnist_root):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_WAIT_POLICY="PASSIVE", INTERP_DATA_DIR=str(mnist_root))
    proc = run_cli(["train", "model=cnn", "callbacks=[]", f"runs_dir={tmp_path}"], env, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max_epochs=4" in proc.stderr + proc.stdout  # the model config's epochs, not the MLP's 10
    found = re.search(r"test accuracy: ([0-9.]+) \(10000 test images\)", proc.stdout)
    assert found, proc.stdout[-2000:]
    assert float(found.group(1)) >= 0.992, found.group(0)
    assert list(tmp_path.glob("mnist_cnn/*/checkpoints/last.ckpt"))
