"""Speed of top-k mining (``mine_topk``) against a bare inference pass (a benchmark, not a test).

Mines all 512 units of ``dense_1`` of the MNIST MLP over the 60,000 MNIST training images
(batch 1024, k=16) and times it against

* a bare pass up to ``dense_1``: normalize + flatten + dense_1 under ``torch.inference_mode``,
  on the same batches with the same uint8 -> float conversion (the target: at most 1.15x), and
* a bare pass through the whole network.

The weights are a random initialization (seed 0): the time does not depend on training. The
data is in the data set's own order. All variants alternate repetition by repetition in one
process (:func:`common.interleave`); medians over the repetitions are reported, of wall time and
of process CPU time, with the median of the per-repetition ratios. A *typical batch* is also
timed: the median interval between consecutive batches inside each pass (the data is handed
over by a generator that stamps the time), which a burst of contention from another job barely
moves. Minor page faults per pass are counted too; ``--malloc pinned`` keeps glibc from handing
freed heap memory back to the OS, which otherwise makes some passes (of any variant) fault their
buffers in again, depending on the heap's history.

Run from the repository root::

    .venv/bin/python -m benchmarks.topk_speed            # MNIST from $INTERP_DATA_DIR or ../shared/data
    .venv/bin/python -m benchmarks.topk_speed --threads 2,1 --malloc both   # what RESULTS.md shows
    .venv/bin/python -m benchmarks.topk_speed --reps 3 --no-write
"""

from __future__ import annotations

import os

# Shared, oversubscribed CPUs: OpenMP threads spinning at barriers make 2-thread kernels very
# noisy when another process holds a core; sleep instead (set before torch loads OpenMP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import ctypes
import resource

import torch

from benchmarks.common import (
    StepClock,
    Stopwatch,
    command_line,
    data_root,
    interleave,
    log,
    machine_line,
    median,
    paired_ratio,
    table,
    today,
    write_section,
)
from interp.data import load_mnist
from interp.models import MnistMLP
from interp.optvis.topk import mine_topk

SECTION = "## Top-k mining (benchmarks/topk_speed.py)"
BARE = "bare pass to dense_1"
FULL = "bare pass, full network"


def to_input(xb: torch.Tensor) -> torch.Tensor:
    """The conversion mine_topk applies to uint8 batches (``interp.optvis.topk._prepare``)."""
    return xb.float().div_(255)


def batches(images: torch.Tensor, batch_size: int, clock: StepClock | None = None):
    """Slices of ``images``, stamping the time as each one is requested."""
    for start in range(0, images.shape[0], batch_size):
        if clock is not None:
            clock.tick()
        yield images[start : start + batch_size]
    if clock is not None:
        clock.tick()


def pin_malloc() -> bool:
    """Stop glibc from giving freed heap memory back to the OS (and re-faulting it later)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-1, 1 << 30)) and bool(libc.mallopt(-3, 32 << 20))  # TRIM, MMAP
    except (OSError, AttributeError):
        return False


def run(images: torch.Tensor, threads: int, reps: int, bs: int, k: int, heap: str = "default") -> tuple[str, float]:
    """Time the variants with ``threads`` torch threads; a markdown paragraph and the ratio."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MnistMLP().eval()  # random initialization: the time does not depend on the weights
    top_name = f"mine_topk, 512 units, k={k}"
    bottom_name = f"mine_topk bottom-k, k={k}"
    clocks: dict[str, list[StepClock]] = {}

    def clock(name: str) -> StepClock:
        c = StepClock()
        clocks.setdefault(name, []).append(c)
        return c

    def bare_dense_1():
        c = clock(BARE)
        with torch.inference_mode():
            for xb in batches(images, bs, c):
                model.dense_1(model.flatten(model.normalize(to_input(xb))))

    def bare_full():
        c = clock(FULL)
        with torch.inference_mode():
            for xb in batches(images, bs, c):
                model(to_input(xb))

    def mine(largest: bool, name: str):
        return lambda: mine_topk(model, "dense_1", batches(images, bs, clock(name)), k=k, largest=largest)

    variants = {
        BARE: bare_dense_1,
        FULL: bare_full,
        top_name: mine(True, top_name),
        bottom_name: mine(False, bottom_name),
    }
    faults: dict[str, list[int]] = {name: [] for name in variants}

    def measure(name, fn):
        # minor page faults too: glibc may hand large freed blocks back to the OS and fault
        # them in again on the next batch, in either variant, depending on the heap's history
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        watch = Stopwatch()
        watch.start()
        fn()
        watch.stop()
        faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return watch.wall, watch.cpu

    load_before = os.getloadavg()[0]
    wall, cpu = interleave(variants, reps=reps, warmup=1, measure=measure)
    load_after = os.getloadavg()[0]
    typical = {}
    for name, cs in clocks.items():
        steps = [c.typical_step() for c in cs[1:]]  # skip the warm-up
        typical[name] = median([s[0] for s in steps if s is not None])

    rows = []
    for name in variants:
        rows.append(
            [
                name,
                f"{median(wall[name]) * 1e3:.0f}",
                f"{min(wall[name]) * 1e3:.0f}-{max(wall[name]) * 1e3:.0f}",
                f"{median(cpu[name]) * 1e3:.0f}",
                f"{typical[name] * 1e3:.2f}",
                f"{median(wall[name]) / median(wall[BARE]):.3f}",
                f"{paired_ratio(wall[name], wall[BARE]):.3f}",
                f"{typical[name] / typical[BARE]:.3f}",
                f"{median(cpu[name]) / median(cpu[BARE]):.3f}",
                f"{median(wall[name]) / median(wall[FULL]):.3f}",
                f"{median(faults[name]):.0f}",
            ]
        )
    header = [
        "variant",
        "wall ms (median)",
        "wall ms (min-max)",
        "CPU ms (median)",
        "typical batch ms",
        "/ bare dense_1 (medians)",
        "/ bare dense_1 (paired)",
        "/ bare dense_1 (typical batch)",
        "/ bare dense_1 (CPU)",
        "/ bare full net",
        "minor faults per pass (median)",
    ]
    ratio = median(wall[top_name]) / median(wall[BARE])
    paired = paired_ratio(wall[top_name], wall[BARE])
    verdict = "meets" if ratio <= 1.15 else "misses"
    text = "\n".join(
        [
            f"**{threads} thread{'s' if threads > 1 else ''}, heap {heap}** ({machine_line(threads)}; load average "
            f"{load_before:.1f} before / {load_after:.1f} after):",
            "",
            table(header, rows, align="l" + "r" * (len(header) - 1)),
            "",
            f"Top-k mining takes {ratio:.3f}x the time of a bare pass to `dense_1` (median of the "
            f"per-repetition ratios {paired:.3f}; target <= 1.15x: {verdict}) and "
            f"{median(wall[top_name]) / median(wall[FULL]):.3f}x a bare pass through the whole network.",
            "",
        ]
    )
    return text, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help="measured repetitions of each variant")
    parser.add_argument("--threads", default="2", help="torch thread counts, comma-separated (e.g. 2,1)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument(
        "--malloc",
        default="default",
        choices=["default", "pinned", "both"],
        help="glibc heap: as is, pinned (no trimming: no page faults from returned memory), or both",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    images, _ = load_mnist(data_root(), train=True, download=False)
    parts = [
        SECTION,
        "",
        f"{today()}; reproduce: `{command_line()}` (MNIST from `$INTERP_DATA_DIR`, default `../shared/data`).",
        "",
        f"All 512 units of `dense_1` of `MnistMLP` (random init, seed 0: the time does not depend "
        f"on the weights) over the 60,000 MNIST training images in their own order, batch "
        f"{args.batch_size}, k={args.k}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
        f"{args.reps} interleaved repetitions after one warm-up. *Typical batch*: median interval "
        f"between consecutive batches within a pass. CPU: process CPU time (all threads).",
        "",
    ]
    modes = ["default", "pinned"] if args.malloc == "both" else [args.malloc]
    for mode in modes:
        if mode == "pinned":
            if not pin_malloc():
                log("mallopt is not available (not glibc): skipping the pinned runs")
                break
            parts += [
                "*Heap pinned* (`--malloc pinned`: glibc `mallopt(M_TRIM_THRESHOLD, 1 GiB)` and "
                "`mallopt(M_MMAP_THRESHOLD, 32 MiB)`, for every variant alike): freed blocks stay "
                "in the process, so no variant pays page faults for memory glibc gave back to the "
                "OS; whether it does so otherwise depends on the heap's history, not on the code.",
                "",
            ]
        for threads in [int(t) for t in args.threads.split(",")]:
            log(f"{threads} thread(s), heap {mode}")
            text, _ = run(images, threads, args.reps, args.batch_size, args.k, heap=mode)
            parts.append(text)
    parts += [
        "Reading the tables: the *heap pinned* ratios are the cost of the mining itself (per "
        "batch: one max over groups of 16 rows, one comparison and one gather; every few batches "
        "a filter, an encode and one `topk` over the touched units; profile it with "
        "`python -m cProfile -s tottime benchmarks/topk_speed.py --reps 1 --no-write`). With the "
        "default heap the ratios also carry glibc's page faults (last column), which land on "
        "either variant depending on the heap's history.",
        "",
    ]
    text = "\n".join(parts)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    else:
        log("--no-write: RESULTS.md left alone")


if __name__ == "__main__":
    main()
