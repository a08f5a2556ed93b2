"""Shared helpers of the benchmarks: interleaved timing, medians, machine info, RESULTS.md sections.

Shared CPU machines drift (other jobs, frequency changes) by tens of percent within minutes, so a
benchmark never times one variant after the other: :func:`interleave` runs every variant once per
repetition, rotating their order, and the reports compare medians of the repetitions.

Scripts in this folder import it as ``from common import ...`` (run them as
``.venv/bin/python benchmarks/<name>.py`` from the repository root).
"""

from __future__ import annotations

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
        order = names[rep % len(names):] + names[: rep % len(names)] if rotate else names
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
    """How this script was invoked, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = sys.argv[0]
    return " ".join([".venv/bin/python", script_text, *sys.argv[1:]])
