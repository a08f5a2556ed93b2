"""Helpers shared by the test files: the repository root, the CLI in a subprocess, a module that
must never run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from torch import nn

REPO = Path(__file__).resolve().parents[1]


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | str, timeout: float = 900, **kwargs
) -> subprocess.CompletedProcess:
    """``python -m interp <args>`` in ``cwd``, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "interp", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


class Boom(nn.Module):
    """Placed after the layer an algorithm reads: it fails the test if the forward pass reaches it."""

    def forward(self, x):
        raise AssertionError("a module after the hooked layer ran: the forward pass should have stopped")
