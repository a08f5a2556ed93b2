"""Helpers shared by the test files: the repository root, the CLI in a subprocess, a module that
must never run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from torch import nn

REPO = Path(__file__).resolve().parents[1]


def run_module(
    module: str,
    args: list[str],
    env: dict[str, str],
    cwd: Path | str,
    timeout: float = 900,
    prefix: list[str] | None = None,
    **kwargs,
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in ``cwd``, output captured as text; ``prefix``: a command that
    runs it (``setpriv ...``)."""
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", module, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | str, timeout: float = 900, **kwargs
) -> subprocess.CompletedProcess:
    """``python -m interp <args>`` in ``cwd``, output captured as text (the one way tests run the CLI;
    :func:`start_cli` for one that is signalled or raced)."""
    return run_module("interp", args, env, cwd, timeout, **kwargs)


def start_cli(
    args: list[str], env: dict[str, str], cwd: Path | str, prefix: list[str] | None = None
) -> subprocess.Popen:
    """``python -m interp <args>`` started in ``cwd`` (stdout and stderr piped, text), for tests that
    signal or race it; ``prefix``: a command that runs it (``setpriv ...``)."""
    return subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "interp", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Boom(nn.Module):
    """Placed after the layer an algorithm reads: it fails the test if the forward pass reaches it."""

    def forward(self, x):
        raise AssertionError("a module after the hooked layer ran: the forward pass should have stopped")


def event_images(event_file: Path | str) -> dict[str, list[tuple[int, bytes]]]:
    """Every image in a TensorBoard events file, ``{tag: [(step, png bytes), ...]}``: the legacy
    image summaries (``add_image``) and the images plugin's tensor summaries (images with a
    description), as TensorBoard's dashboard reads both."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_file), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    out: dict[str, list[tuple[int, bytes]]] = {}
    for tag in acc.Tags()["images"]:
        out[tag] = [(e.step, e.encoded_image_string) for e in acc.Images(tag)]
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "images":
            out[tag] = [(e.step, e.tensor_proto.string_val[2]) for e in acc.Tensors(tag)]
    return out
