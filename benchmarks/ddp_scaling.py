"""Feature visualization in 2 CPU processes (torch.distributed, gloo) against 1 process.

``interp.steps.featvis.render_view`` splits the units of a layer across the ranks of
torch.distributed (each rank renders its contiguous share, ``interp.steps.common.my_share``) and
all-gathers the results (``gather_shares``). This benchmark times that split on the CPU:

* (a) ``MnistMLP`` layer ``dense_1``, units 0-511, 28 x 28 inputs;
* (b) ``MnistCNN`` layer ``conv2``, channels 0-31, 28 x 28 inputs;
* (c) torchvision's ResNet-18 layer ``layer3``, channels 0-31, 64 x 64 RGB inputs, 32 steps (the
  issue's alternative conv workload: a layer whose step is dominated by convolutions, where (b) is
  dominated by a fixed per-step cost of a few small operations that both ranks pay);

all with random weights (``torch.manual_seed(0)``: the time of a step does not depend on the
weights), view ``plain``: ``render_view(model, layer, units, "plain", FeatVisSettings(shape=shape,
steps=steps, seed=0, kind="channel", transforms="default"))``, the same steps in both variants. Variants:

* 1 process, ``torch.set_num_threads(1)`` (no process group: it renders every unit);
* 2 processes (``torch.multiprocessing.spawn``, gloo process group on 127.0.0.1, a free
  ``MASTER_PORT`` per run), 1 thread each.

Both variants run in freshly spawned processes with ``OMP_WAIT_POLICY=PASSIVE``. In each process a
short warm-up render (2 steps, its own share) runs first, then the ranks meet at a barrier and the
timed call starts; it ends when ``render_view`` returns, that is after the all-gather, so the time
of the 2-process run is the wall time until every rank holds every image (the slower of the two
ranks). Process start-up (Python, torch and interp imports) is not in the timed part; it is reported
separately. The gathered images of rank 0 are compared with the 1-process images by ``torch.equal``
(bitwise) in every repetition.

The variants of both workloads alternate, repetition by repetition, order rotated
(:func:`benchmarks.common.interleave`); medians over the repetitions are reported.

Run from the repository root::

    .venv/bin/python -m benchmarks.ddp_scaling                   # ~8 min on 2 cores
    .venv/bin/python -m benchmarks.ddp_scaling --reps 1 --steps 16 --no-write
"""

from __future__ import annotations

import os

# Shared CPUs: idle OpenMP threads sleep instead of spinning (set before torch loads OpenMP); the
# spawned processes inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import queue
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.common import (
    interleave,
    log,
    machine_header,
    median,
    paired_ratio,
    publish,
    spread,
    table,
)

SECTION = "## Feature visualization across 2 processes (benchmarks/ddp_scaling.py)"
TARGET = 1.7
IMAGE_SHAPE = (1, 28, 28)
WARMUP_STEPS = 2
LR = 0.05  # render's default learning rate


@dataclass(frozen=True)
class Workload:
    name: str
    model: str  # "mlp", "cnn" or "resnet18"
    layer: str
    units: int
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    steps: int | None = None  # None: --steps

    def build(self) -> torch.nn.Module:
        from interp.models import MnistCNN, MnistMLP

        torch.manual_seed(0)
        if self.model == "resnet18":
            import torchvision

            return torchvision.models.resnet18(weights=None).eval()
        return (MnistMLP() if self.model == "mlp" else MnistCNN()).eval()


WORKLOADS = {
    "mlp": Workload("MnistMLP dense_1, units 0-511", "mlp", "dense_1", 512),
    "cnn": Workload("MnistCNN conv2, channels 0-31", "cnn", "conv2", 32),
    "resnet18": Workload(
        "ResNet-18 layer3, channels 0-31, 64 px", "resnet18", "layer3", 32, image_shape=(3, 64, 64), steps=32
    ),
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _render(workload: Workload, model: torch.nn.Module, steps: int, ticks: list[float] | None = None):
    """``render_view`` of every unit of ``workload`` (this rank's share, gathered); with
    ``ticks``, the time after every optimizer step is appended to it (render's own Adam, lr 0.05,
    stamped: the same computation, so the same bits)."""
    from interp.steps.featvis import FeatVisSettings, ViewRun, render_view

    stamps = ticks if ticks is not None else []

    class StampedAdam(torch.optim.Adam):
        def step(self, closure=None):
            out = super().step(closure)
            stamps.append(time.perf_counter())
            return out

    return render_view(
        model,
        workload.layer,
        list(range(workload.units)),
        "plain",
        FeatVisSettings(shape=workload.image_shape, steps=steps, seed=0, kind="channel", transforms="default"),
        run=ViewRun(optimizer=lambda params: StampedAdam(params, lr=LR)),
    )


def _serve(rank: int, world: int, port: int, inbox, outbox) -> None:
    """One worker process: (join the gloo group,) then, per command ``(workload, steps, path)``
    from ``inbox``, warm up, render every unit of the workload (its share under
    torch.distributed) and save the times (and on rank 0 the gathered images) to ``path``;
    ``None`` ends it. Each finished command puts ``(rank, None)`` on ``outbox``, a failure
    ``(rank, traceback)``."""
    import traceback

    torch.set_num_threads(1)
    import interp.steps.featvis  # noqa: F401  (imported once, before any timing)

    try:
        if world > 1:
            os.environ["MASTER_ADDR"] = "127.0.0.1"
            os.environ["MASTER_PORT"] = str(port)
            dist.init_process_group("gloo", rank=rank, world_size=world)
        models: dict[str, torch.nn.Module] = {}
        outbox.put((rank, None))  # ready
        while (command := inbox.get()) is not None:
            workload, steps, path = command
            model = models.setdefault(workload.model, workload.build())
            _render(workload, model, WARMUP_STEPS)
            if world > 1:
                dist.barrier()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            ticks: list[float] = []
            rendering = _render(workload, model, steps, ticks)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            gaps = [b - a for a, b in zip(ticks, ticks[1:])]
            step = statistics.median(gaps) if gaps else float("nan")
            result: dict[str, object] = {"wall": wall, "cpu": cpu, "step": step}
            if rank == 0:
                result["images"] = rendering.image
                result["activations"] = rendering.activations
            torch.save(result, path)
            outbox.put((rank, None))
    except BaseException:
        outbox.put((rank, traceback.format_exc()))
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class Group:
    """``world`` persistent worker processes (spawned once: Python, torch and interp take tens of
    seconds to import on a busy 2-core machine), a gloo process group among them when ``world > 1``."""

    def __init__(self, world: int, tmp: Path):
        ctx = mp.get_context("spawn")
        self.world, self.tmp, self.runs = world, tmp, 0
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(world)]
        port = free_port()
        start = time.perf_counter()
        self.procs = [
            ctx.Process(target=_serve, args=(rank, world, port, self.inboxes[rank], self.outbox), daemon=True)
            for rank in range(world)
        ]
        for proc in self.procs:
            proc.start()
        self._wait()
        self.startup = time.perf_counter() - start

    def _wait(self) -> None:
        """Until every rank has reported; a failure or a dead worker raises."""
        pending = set(range(self.world))
        while pending:
            try:
                rank, error = self.outbox.get(timeout=5)
            except queue.Empty:
                dead = [r for r in pending if not self.procs[r].is_alive()]
                if dead:
                    raise RuntimeError(f"worker rank {dead[0]} of {self.world} died") from None
                continue
            if error is not None:
                raise RuntimeError(f"worker rank {rank} of {self.world} failed:\n{error}")
            pending.discard(rank)

    def run(self, workload: Workload, steps: int) -> dict[str, object]:
        """One timed render on every rank: the times and rank 0's images."""
        self.runs += 1
        paths = [self.tmp / f"w{self.world}-run{self.runs}-rank{r}.pt" for r in range(self.world)]
        for inbox, path in zip(self.inboxes, paths):
            inbox.put((workload, steps, str(path)))
        self._wait()
        ranks = [torch.load(path, weights_only=False) for path in paths]
        for path in paths:
            path.unlink()
        return {
            "wall": max(float(r["wall"]) for r in ranks),  # every rank returns after the all-gather
            "cpu": sum(float(r["cpu"]) for r in ranks),
            "step": max(float(r["step"]) for r in ranks),
            "images": ranks[0]["images"],
            "activations": ranks[0]["activations"],
        }

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for proc in self.procs:
            proc.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=256, help="optimization steps of the MNIST renders (ResNet-18: 32), both variants"
    )
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each variant")
    parser.add_argument("--workloads", default="mlp,cnn,resnet18", help="comma-separated: mlp, cnn, resnet18")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        parser.error(f"--workloads: unknown {unknown}; choose from {', '.join(WORKLOADS)}")
    if args.steps < 1 or args.reps < 1:
        parser.error("--steps and --reps must be >= 1")

    reproduce = " ".join([".venv/bin/python -m benchmarks.ddp_scaling", *sys.argv[1:]])
    load_before = os.getloadavg()[0]
    total_start = time.perf_counter()
    results: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="interp-ddp-scaling-") as tmp:
        log("starting the worker processes (1, and 2 in a gloo group)")
        groups = {world: Group(world, Path(tmp)) for world in (1, 2)}
        try:
            variants = {}
            for key in names:
                for world in (1, 2):
                    name = f"{key}/{world}"

                    def variant(workload=WORKLOADS[key], group=groups[world], name=name):
                        results.setdefault(name, []).append(group.run(workload, workload.steps or args.steps))

                    variants[name] = variant

            def measure(name, fn):
                fn()
                last = results[name][-1]
                return float(last["wall"]), float(last["cpu"])

            log(f"{args.steps} steps, {args.reps} reps, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
            wall, cpu = interleave(variants, reps=args.reps, warmup=0, measure=measure)
        finally:
            for group in groups.values():
                group.close()
        startup = ", ".join(f"{w} process{'es' if w > 1 else ''} in {g.startup:.0f} s" for w, g in groups.items())
    total = time.perf_counter() - total_start
    load_after = os.getloadavg()[0]

    rows, notes = [], []
    for key in names:
        workload = WORKLOADS[key]
        one, two = f"{key}/1", f"{key}/2"
        equal_images = [torch.equal(a["images"], b["images"]) for a, b in zip(results[one], results[two])]
        equal_acts = [torch.equal(a["activations"], b["activations"]) for a, b in zip(results[one], results[two])]
        speedup = median(wall[one]) / median(wall[two])
        paired = paired_ratio(wall[one], wall[two])
        efficiency = median(cpu[one]) / median(cpu[two])
        step_speedup = median([float(r["step"]) for r in results[one]]) / median(
            [float(r["step"]) for r in results[two]]
        )
        for world, name in ((1, one), (2, two)):
            rows.append(
                [
                    workload.name,
                    f"{world} x 1 thread",
                    f"{median(wall[name]):.2f}",
                    spread(wall[name]),
                    f"{median(cpu[name]):.2f}",
                    f"{median([c / (w * world) for c, w in zip(cpu[name], wall[name])]):.0%}",
                    f"{median([float(r['step']) for r in results[name]]) * 1e3:.1f}",
                    "-" if world == 1 else f"**{speedup:.2f}x**",
                    "-" if world == 1 else f"{paired:.2f}x",
                    "-" if world == 1 else f"{step_speedup:.2f}x",
                    "-" if world == 1 else f"{efficiency:.2f}",
                    "-" if world == 1 else f"{sum(equal_images)}/{len(equal_images)}",
                ]
            )
        verdict = "meets" if speedup >= TARGET else "misses"
        bitwise = "bitwise equal" if all(equal_images) else "NOT bitwise equal"
        share1 = median([c / w for c, w in zip(cpu[one], wall[one])])
        share2 = median([c / (2 * w) for c, w in zip(cpu[two], wall[two])])
        notes.append(
            f"{workload.name}: 2 processes are **{speedup:.2f}x** faster than 1 (median of the "
            f"per-repetition ratios {paired:.2f}x, {step_speedup:.2f}x per typical step; target >= "
            f"{TARGET}x: {verdict}). The gathered images are {bitwise} to the 1-process images "
            f"(`torch.equal`, {sum(equal_images)}/{len(equal_images)} repetitions; activations "
            f"{sum(equal_acts)}/{len(equal_acts)}). The 1-process run had {share1:.0%} of a core, the "
            f"2-process run {share2:.0%} of each of two cores (CPU / wall / processes; below 100% "
            f"other jobs held the cores). Both processes together do {1 / efficiency:.2f}x the CPU "
            f"work of one process (the cost of the split: each step has a fixed cost that both ranks "
            f"pay), which bounds the speedup on two free cores to about {2 * efficiency:.2f}x."
        )
        log(notes[-1])

    parts = [
        SECTION,
        "",
        machine_header(1),
        "",
        f"Reproduce: `{reproduce}`.",
        "",
        '`render_view(model, layer, units, "plain", FeatVisSettings(shape=shape, steps=steps, '
        'seed=0, kind="channel", transforms="default"))` ('
        + "; ".join(
            f"{WORKLOADS[k].name}: shape {WORKLOADS[k].image_shape}, {WORKLOADS[k].steps or args.steps} steps"
            for k in names
        )
        + "), random weights "
        f"(`torch.manual_seed(0)`). 1 process with `torch.set_num_threads(1)` against 2 processes "
        f"(spawned by `torch.multiprocessing`, gloo on 127.0.0.1) with 1 thread each, each rank "
        f"rendering its contiguous share of the units and all-gathering them; the worker processes "
        f"are started once ({startup}, not timed) and serve every repetition. Timed: from a barrier "
        f"after a {WARMUP_STEPS}-step warm-up to the return of `render_view` (after the all-gather; "
        f"the slower rank). *Typical step*: the median interval between optimizer steps (Adam lr "
        f"{LR}, render's default, stamped after each step), the slower rank's; it leaves out bursts "
        f"of contention. {args.reps} repetitions, variants interleaved with the order rotated; "
        f"medians. CPU s: process CPU time summed over the ranks. *CPU efficiency*: CPU s of 1 process / CPU s of "
        f"2 (1.00: the split costs no extra work). Load average {load_before:.1f} before / "
        f"{load_after:.1f} after: on a shared 2-core machine another job takes cycles from the "
        f"2-process run (it needs both cores) more than from the 1-process one.",
        "",
        table(
            [
                "workload",
                "processes",
                "wall s (median)",
                "wall s (min-max)",
                "CPU s (median)",
                "CPU / (wall x processes)",
                "typical step ms",
                "speedup (medians)",
                "speedup (paired)",
                "speedup (typical step)",
                "CPU efficiency",
                "images bitwise equal",
            ],
            rows,
            align="llrrrrrrrrrr",
        ),
        "",
        *[f"- {n}" for n in notes],
        "",
    ]
    publish(SECTION, parts, total, write=not args.no_write)


if __name__ == "__main__":
    main()
