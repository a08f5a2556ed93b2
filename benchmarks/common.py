"""Shared helpers of the benchmarks: interleaved timing, medians, machine info, RESULTS.md sections,
and the bare loops (floors) that the optimization benchmarks compare interp with.

Shared CPU machines drift (other jobs, frequency changes) by tens of percent within minutes, so a
benchmark never times one variant after the other: :func:`interleave` runs every variant once per
repetition, rotating their order, and the reports compare medians of the repetitions.

Scripts in this folder import it as ``from benchmarks.common import ...`` (run them as
``.venv/bin/python -m benchmarks.<name>`` from the repository root).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from interp.optvis import octave_sizes, param
from interp.optvis.transforms import standard_transforms

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
DATA_DIR_ENV = "INTERP_DATA_DIR"


def data_root() -> Path:
    """``$INTERP_DATA_DIR``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO.parent / "shared" / "data")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform`` as a fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(threads: int) -> str:
    """One line for a report: CPU, threads used, cores seen, torch version."""
    return (
        f"{cpu_model()}, {threads} torch threads ({os.cpu_count()} cores visible), "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def today() -> str:
    return datetime.date.today().isoformat()


def machine_header(threads: int) -> str:
    """A report's first line: date, machine and the OpenMP wait policy."""
    return f"Date: {today()}. Machine: {machine_line(threads)}; `OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}`."


def log(message: str) -> None:
    """Progress on stdout, flushed at once."""
    print(message, flush=True)


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Stopwatch:
    """Wall time and CPU time of this process (all its threads) between ``start`` and ``stop``.

    CPU time counts only the cycles this process ran: on a shared, oversubscribed machine it is
    far less disturbed by other processes than wall time (with ``OMP_WAIT_POLICY=PASSIVE`` idle
    OpenMP threads sleep and are not counted).
    """

    def __init__(self):
        self.wall = self.cpu = 0.0
        self._wall0 = self._cpu0 = None

    def start(self) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0


class StepClock:
    """Timestamps (wall, CPU, key) taken once per optimization step.

    :meth:`typical_step` is the median interval between consecutive ticks: a burst of contention
    from another process slows a few steps and barely moves the median, where it can double the
    time of a whole run. Ticks carry a ``key`` (e.g. the image size of a DeepDream octave): only
    consecutive ticks with the same key form an interval, the median is taken per key, and the
    per-key medians are averaged with the number of intervals of each key as weights.
    """

    def __init__(self):
        self.stamps: list[tuple[float, float, object]] = []

    def tick(self, key: object = None) -> None:
        self.stamps.append((time.perf_counter(), time.process_time(), key))

    def typical_step(self) -> tuple[float, float] | None:
        """(wall, CPU) seconds of a typical step; None with fewer than two ticks."""
        groups: dict[object, tuple[list[float], list[float]]] = {}
        for (w0, c0, k0), (w1, c1, k1) in zip(self.stamps, self.stamps[1:]):
            if k0 == k1:
                walls, cpus = groups.setdefault(k1, ([], []))
                walls.append(w1 - w0)
                cpus.append(c1 - c0)
        n = sum(len(w) for w, _ in groups.values())
        if n == 0:
            return None
        wall = sum(statistics.median(w) * len(w) for w, _ in groups.values()) / n
        cpu = sum(statistics.median(c) * len(c) for _, c in groups.values()) / n
        return wall, cpu


def interleave(
    variants: dict[str, Callable[[], object]],
    reps: int,
    warmup: int = 1,
    rotate: bool = True,
    measure: Callable[[str, Callable[[], object]], tuple[float, float]] | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Time every variant once per repetition, variants alternating; return ``(wall, cpu)``
    samples, each ``{name: [seconds per repetition]}``.

    Args:
        variants: name -> zero-argument callable (one measured unit of work).
        reps: measured repetitions of each variant.
        warmup: unmeasured rounds over all variants first (allocator, oneDNN caches, imports).
        rotate: rotate the order each repetition, so no variant always runs first or last.
        measure: ``(name, fn) -> (wall seconds, cpu seconds)``; default: the whole call of ``fn``.
            A variant may time only part of its work this way (one epoch inside ``Trainer.fit``),
            or divide by the number of steps it ran.
    """

    def whole_call(name, fn):
        watch = Stopwatch()
        watch.start()
        fn()
        watch.stop()
        return watch.wall, watch.cpu

    measure = measure or whole_call
    names = list(variants)
    for i in range(warmup):
        for name in names:
            log(f"  warm-up {i + 1}/{warmup}: {name}")
            variants[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)] if rotate else names
        for name in order:
            w, c = measure(name, variants[name])
            wall[name].append(w)
            cpu[name].append(c)
            log(f"  rep {rep + 1}/{reps}: {name}: wall {w:.4f} s, cpu {c:.4f} s")
    return wall, cpu


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """``min-max`` of the samples, for the tables."""
    return f"{min(values):.3f}-{max(values):.3f}"


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median of the per-repetition ratios ``num[i] / den[i]`` (robust to drift between reps)."""
    return statistics.median(a / b for a, b in zip(num, den))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An advisory lock for writers of ``path`` (POSIX); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    # The lock file lives in the temporary directory, not next to RESULTS.md in the repository.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    lock = Path(tempfile.gettempdir()) / f"interp-benchmarks-{digest}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def replace_section(document: str, heading: str, text: str) -> str:
    """``document`` with the section that starts at the line ``heading`` (up to the next ``## ``
    line) replaced by ``text``; appended when absent. Other sections are kept as they are."""
    text = text.rstrip("\n") + "\n"
    lines = document.splitlines(keepends=True)
    out: list[str] = []
    skipping = replaced = False
    for line in lines:
        if line.rstrip() == heading.rstrip():
            skipping = replaced = True
            out.append(text)
            continue
        if skipping and line.startswith("## "):
            skipping = False
            out.append("\n")
        if not skipping:
            out.append(line)
    if not replaced:
        body = "".join(out).rstrip("\n")
        return (body + "\n\n" if body else "") + text
    return "".join(out).rstrip("\n") + "\n"


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace this benchmark's ``## ...`` section of RESULTS.md, leaving the others intact.

    Other benchmarks write their own sections of the same file, possibly at the same time: the
    file is read, changed and written back at once (under a lock, then an atomic rename), so the
    window in which a concurrent writer could be overwritten is a few milliseconds.
    """
    if not text.lstrip().startswith(heading):
        text = f"{heading}\n\n{text}"
    with _locked(path):
        old = path.read_text() if path.exists() else "# Benchmark results\n"
        new = replace_section(old, heading, text)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(new)
        os.replace(tmp, path)
    log(f"wrote section {heading!r} of {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A markdown table; ``align`` like ``"lrr"`` (left/right per column)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """How this benchmark was invoked, as ``.venv/bin/python -m benchmarks.<name> [args]``."""
    script = Path(sys.argv[0]).resolve()
    return " ".join([".venv/bin/python", "-m", f"benchmarks.{script.stem}", *sys.argv[1:]])


def add_run_options(parser: argparse.ArgumentParser, profile_help: str) -> None:
    """The options the optvis benchmarks end with: ``--threads``, ``--profile``, ``--no-write``."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help=profile_help)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")


def publish(section: str, parts: list[str], seconds: float, write: bool) -> None:
    """Join a report's lines, add the benchmark's wall time, print it and (``write``) store it as
    ``section`` of RESULTS.md."""
    text = "\n".join([*parts, f"Benchmark wall time: {seconds:.0f} s.", ""])
    log("")
    log(text)
    if write:
        write_section(section, text)


def profile_pair(
    name_a: str,
    fn_a: Callable[[], object],
    name_b: str,
    fn_b: Callable[[], object],
    top: int = 12,
    setup: Callable[[], object] | None = None,
) -> str:
    """Self CPU time per op of one run of each, side by side, largest differences (b - a) first.

    ``setup`` (e.g. seeding) runs before each of the two runs, outside the profile.
    """
    from torch.profiler import ProfilerActivity, profile

    tables = {}
    for name, fn in ((name_a, fn_a), (name_b, fn_b)):
        if setup is not None:
            setup()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        tables[name] = {e.key: (e.self_cpu_time_total, e.count) for e in prof.key_averages()}
    a, b = tables[name_a], tables[name_b]
    keys = sorted(set(a) | set(b), key=lambda k: -abs(b.get(k, (0, 0))[0] - a.get(k, (0, 0))[0]))
    rows = []
    for k in keys[:top]:
        ta, ca = a.get(k, (0, 0))
        tb, cb = b.get(k, (0, 0))
        rows.append([f"`{k}`", f"{ta / 1e3:.1f} ({ca})", f"{tb / 1e3:.1f} ({cb})", f"{(tb - ta) / 1e3:+.1f}"])
    total_a = sum(t for t, _ in a.values()) / 1e3
    total_b = sum(t for t, _ in b.values()) / 1e3
    rows.append(["**all ops**", f"{total_a:.1f}", f"{total_b:.1f}", f"{total_b - total_a:+.1f}"])
    return table(["op", f"{name_a} self ms (calls)", f"{name_b} self ms (calls)", "difference ms"], rows)


# ----------------------------------------------------------------------------- bare loops (floors)
# What one optimization step of interp cannot do without, written as plain PyTorch on a network
# cut at the layer: the floors the optvis benchmarks compare ``render`` and ``dream`` with.

RESNET_TO_LAYER3 = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")


def cut_network(net: nn.Module, names: tuple[str, ...] = RESNET_TO_LAYER3) -> nn.Sequential:
    """``nn.Sequential`` of ``net``'s submodules ``names`` (sharing them), in eval mode: by
    default a torchvision-style ResNet cut after ``layer3``."""
    return nn.Sequential(*(getattr(net, name) for name in names)).eval()


def _adam_ascent(
    cut: nn.Module,
    params,
    image: Callable[[], torch.Tensor],
    steps: int,
    score: Callable[[torch.Tensor], torch.Tensor],
    lr: float,
    on_step: Callable[[], object] | None,
) -> None:
    """``steps`` Adam steps on ``params`` maximizing ``score(cut(image()))``; ``on_step`` after each."""
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        acts = cut(image())
        (-score(acts)).backward()
        opt.step()
        if on_step is not None:
            on_step()


def floor_adam(
    cut: nn.Module,
    shape: tuple[int, ...],
    steps: int,
    score: Callable[[torch.Tensor], torch.Tensor],
    lr: float,
    seed: int = 0,
    on_step: Callable[[], object] | None = None,
) -> None:
    """The floor of a render step: Adam on a pixel tensor of ``shape`` -> sigmoid -> ``cut``,
    maximizing ``score`` of the activations; no transforms."""
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.randn(shape, generator=g) * 0.01).requires_grad_(True)
    _adam_ascent(cut, [pixels], lambda: torch.sigmoid(pixels), steps, score, lr, on_step)


def bare_default_render(
    cut: nn.Module,
    size: int,
    steps: int,
    score: Callable[[torch.Tensor], torch.Tensor],
    lr: float,
    seed: int = 0,
    on_step: Callable[[], object] | None = None,
) -> None:
    """The floor with ``render``'s default parameterization (``param.image``: Fourier,
    colour-decorrelated) and transforms (``standard_transforms``), written as a bare loop."""
    p = param.image((1, 3, size, size), seed=seed)
    transforms = standard_transforms()
    g = torch.Generator().manual_seed(seed)
    _adam_ascent(cut, p.parameters(), lambda: transforms(p(), g), steps, score, lr, on_step)


def bare_dream(
    cut: nn.Module,
    base: torch.Tensor,
    octaves: int,
    steps: int,
    scale: float = 1.4,
    jitter: int = 32,
    step_size: float = 1.5,
    seed: int = 0,
) -> torch.Tensor:
    """The floor of DeepDream: ``dream``'s algorithm as a bare loop on ``cut``.

    The octave sizes of ``dream`` (``octave_sizes``), random roll jitter from a seeded generator,
    squared-L2 objective, gradient to the input, step ``step_size/255 * g / mean|g|``, clamp to
    [0, 1], detail carried from octave to octave.
    """
    g = torch.Generator().manual_seed(seed)
    detail = None
    x = base
    for size in octave_sizes(base.shape[-2], base.shape[-1], octaves, scale):
        octave_base = (
            base
            if size == tuple(base.shape[-2:])
            else F.interpolate(base, size=size, mode="bilinear", align_corners=False)
        )
        if detail is None:
            detail = torch.zeros_like(octave_base)
        elif detail.shape[-2:] != octave_base.shape[-2:]:
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
        x = (octave_base + detail).clamp(0, 1)
        for _ in range(steps):
            dy, dx = (int(v) - jitter for v in torch.randint(2 * jitter + 1, (2,), generator=g))
            rolled = torch.roll(x, shifts=(dy, dx), dims=(-2, -1)).requires_grad_(True)
            score = cut(rolled).pow(2).sum()
            (grad,) = torch.autograd.grad(score, rolled)
            grad = torch.roll(grad, shifts=(-dy, -dx), dims=(-2, -1))
            x = (x + (step_size / 255.0) * grad / grad.abs().mean().clamp(min=1e-12)).clamp(0, 1)
        detail = x - octave_base
    return x
