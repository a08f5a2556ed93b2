"""Helpers shared by the test files: the repository root, the CLI in a subprocess, a module that
must never run, a tiny synthetic MNIST, a few seconds of training, the one-line error check."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
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


def write_tiny_mnist(raw: Path, n_train: int = 300, n_test: int = 100, gz: bool = False) -> dict:
    """Write a small MNIST in the IDX format torchvision reads (magic 2051/2049, big-endian) into ``raw``:
    a bright bar whose row encodes the label, plus noise. Returns ``{"train": (images, labels), "t10k": ...}``."""
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


def one_line(exc: pytest.ExceptionInfo) -> str:
    """The message of an expected user error: an ``InterpError`` whose message is one line."""
    from interp.errors import InterpError

    message = str(exc.value)
    assert "\n" not in message, message
    assert isinstance(exc.value, InterpError)
    return message


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's one line on stderr, exit code 2, no traceback; returns that line."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def random_digits(n: int = 64, seed: int = 0):
    """A small data set shaped like MNIST (uint8 images, labels 0-9)."""
    from interp.data.mnist import TensorImageDataset

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return TensorImageDataset(images, torch.arange(n) % 10)


def small_mlp() -> nn.Module:
    """The project's MLP with 32 hidden units, seeded, in eval mode (untrained)."""
    from interp.models import MnistMLP

    torch.manual_seed(0)
    return MnistMLP(hidden=32).eval()


def small_cnn_layers() -> tuple[nn.Sequential, nn.Linear]:
    """The layers of a user's small MNIST CNN with in-place ReLUs (``features``: conv 8, pool, conv 16, pool to 4x4;
    ``head``: 256 -> 10), freshly initialized."""
    features = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(4),
    )
    return features, nn.Linear(16 * 16, 10)
