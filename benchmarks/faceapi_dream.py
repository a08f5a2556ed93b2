"""DeepDream with the trained face-api.js recognition network: ``dream`` against a bare loop, and the memory of tiles.

Workload 1 (speed): the astronaut photo (``$INTERP_DATA_DIR/images/astronaut.png``, else the shipped
256 px copy) upscaled to 512x512, ``face_recognition(resize=False)`` (dlib's ResNet with the published
face-api weights, from ``$INTERP_CACHE_DIR/face-api`` or ``$INTERP_DATA_DIR/face-api``; photos only
normalized, not resized to 150 px), objective ``layer_l2("layer1")`` (the layer of ``preset=face``),
4 octaves 1.4 apart x 10 steps, CPU, 2 threads. FLOOR: the same algorithm as a bare loop
(``benchmarks.common.bare_dream``: the same octave sizes, steps, roll draws and update) on
``nn.Sequential(preprocess, stem, layer1)``, frozen, eval mode. ``dream`` runs alternate with floor
runs (floor, dream, floor, ..., floor); each ratio is a ``dream`` run over the mean of the floor
runs around it; medians over the repetitions; "typical step" as in ``vggface2_dream``.

Workload 2 (memory): the photo upscaled to 2048x2048 dreamed at ``layer1`` with ``tile_size=512``
(16 tiles at full size) and with one tile (``tile_size=2048``), each in a fresh subprocess: the peak
resident set (``VmHWM`` of ``/proc/self/status``, reset through ``/proc/self/clear_refs`` once the
model and the photo are loaded) minus the resident set at that point is the dream's peak memory.

Run from the repository root::

    .venv/bin/python -m benchmarks.faceapi_dream            # about 3-5 min on 2 busy cores
    .venv/bin/python -m benchmarks.faceapi_dream --reps 2 --no-write
"""

from __future__ import annotations

import os

# Shared CPUs: idle OpenMP threads should sleep, not spin (set before torch loads OpenMP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (
    REPO,
    StepClock,
    Stopwatch,
    add_run_options,
    bare_dream,
    command_line,
    cut_network,
    log,
    machine_header,
    median,
    profile_pair,
    publish,
    table,
)
from benchmarks.vggface2_dream import load_photo
from interp.models.faceapi import FACE_API_VERSION, face_recognition
from interp.optvis import dream, octave_sizes

SECTION = "## face-api.js DeepDream (benchmarks/faceapi_dream.py)"
LAYER = "layer1"
TARGET = 1.10
JITTER = 32
STEP_SIZE = 1.5


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def memory_child(size: int, tile: int, octaves: int, steps: int, threads: int) -> None:
    """In a fresh process: dream the photo at ``size`` px with ``tile_size=tile``; print JSON with the
    peak resident memory the dream added and its wall time."""
    torch.set_num_threads(threads)
    model = face_recognition(resize=False)
    photo, source = load_photo(size)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _status("VmRSS")
    start = time.perf_counter()
    result = dream(model, photo, LAYER, octaves=octaves, steps_per_octave=steps, tile_size=tile)
    wall = time.perf_counter() - start
    peak = _status("VmHWM")
    assert result.image.shape[-1] == size
    print(json.dumps({"growth": peak - before, "before": before, "peak": peak, "wall": wall, "source": source}))


def measure_memory(size: int, tile: int, octaves: int, steps: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.faceapi_dream", "--memory-child", f"{size},{tile},{octaves},{steps}"]
    cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--octaves", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="steps per octave")
    parser.add_argument("--reps", type=int, default=4, help="measured dream() runs (each bracketed by floor runs)")
    parser.add_argument("--big", type=int, default=2048, help="side of the photo of the memory workload")
    parser.add_argument("--big-steps", type=int, default=2, help="steps per octave of the memory workload")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    add_run_options(parser, profile_help="add a torch.profiler op table (dream vs floor)")
    args = parser.parse_args()
    if args.memory_child:
        size, tile, octaves, steps = (int(v) for v in args.memory_child.split(","))
        memory_child(size, tile, octaves, steps, args.threads)
        return
    if args.steps < 2 or args.reps < 1:
        parser.error("--steps must be >= 2 and --reps >= 1")

    torch.set_num_threads(args.threads)
    model = face_recognition(resize=False)
    photo, source = load_photo(args.size)
    cut = cut_network(model, ("preprocess", "stem", LAYER))
    sizes = octave_sizes(args.size, args.size, args.octaves, 1.4)
    total_steps = args.octaves * args.steps
    log(
        f"face_recognition(resize=False), {LAYER}, photo {source}, {args.octaves} octaves "
        f"({', '.join(str(h) for h, _ in sizes)} px) x {args.steps} steps, {args.threads} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, {args.reps} reps"
    )

    clock = StepClock()

    def tick(module, inputs, output):
        if torch.is_grad_enabled():
            clock.tick(tuple(output.shape[-2:]))

    model.get_submodule(LAYER).register_forward_hook(tick)

    def floor_run(steps):
        flags = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            bare_dream(cut, photo, args.octaves, steps, jitter=JITTER, step_size=STEP_SIZE)
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    def dream_run(steps):
        dream(model, photo, LAYER, octaves=args.octaves, steps_per_octave=steps)

    samples: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": [], "typical": [], "typical_cpu": []} for name in ("floor", "dream")
    }

    def measured(name, fn):
        nonlocal clock
        clock = StepClock()
        watch = Stopwatch()
        watch.start()
        fn(args.steps)
        watch.stop()
        typical = clock.typical_step() or (float("nan"), float("nan"))
        s = samples[name]
        s["wall"].append(watch.wall)
        s["cpu"].append(watch.cpu)
        s["typical"].append(typical[0])
        s["typical_cpu"].append(typical[1])
        log(f"  {name}: {watch.wall:.2f} s ({watch.wall / total_steps:.4f} s/step), typical step {typical[0]:.4f} s")

    log("warm-up (1 step per octave each)")
    floor_run(1)
    dream_run(1)
    started = time.perf_counter()
    measured("floor", floor_run)
    ratios: dict[str, list[float]] = {key: [] for key in ("wall", "cpu", "typical", "typical_cpu")}
    for rep in range(args.reps):
        log(f"rep {rep + 1}/{args.reps}")
        measured("dream", dream_run)
        measured("floor", floor_run)
        for key in ratios:
            f = samples["floor"][key]
            ratios[key].append(samples["dream"][key][-1] / ((f[-2] + f[-1]) / 2))
        log(f"  dream / floor: {ratios['wall'][-1]:.3f} (call), {ratios['typical'][-1]:.3f} (typical step)")

    big_sizes = octave_sizes(args.big, args.big, args.octaves, 1.4)
    memory = {}
    for name, tile in (("tiled", 512), ("one tile", args.big)):
        log(f"memory: {args.big} px, tile_size={tile}, {args.octaves} octaves x {args.big_steps} steps (subprocess)")
        memory[name] = measure_memory(args.big, tile, args.octaves, args.big_steps, args.threads)
        log(f"  peak growth {memory[name]['growth'] / 2**20:.0f} MiB, {memory[name]['wall']:.1f} s")
    total = time.perf_counter() - started

    def row(name, ratio_cells):
        s = samples[name]
        return [
            name if name != "dream" else "interp `dream`",
            str(len(s["wall"])),
            f"{median(s['wall']):.2f}",
            f"{min(s['wall']):.2f}-{max(s['wall']):.2f}",
            f"{median(s['wall']) / total_steps:.4f}",
            f"{median(s['typical']):.4f}",
            *ratio_cells,
        ]

    r = {key: median(v) for key, v in ratios.items()}
    rows = [
        row("floor", ["1.00", "1.00", "1.00", "1.00"]),
        row("dream", [f"**{r['typical']:.3f}**", f"{r['wall']:.3f}", f"{r['typical_cpu']:.3f}", f"{r['cpu']:.3f}"]),
    ]
    rows[0][0] = "floor (bare loop, cut net, frozen)"
    verdict = "meets" if r["typical"] <= TARGET and r["wall"] <= TARGET else "misses"
    tiles = -(-args.big // 512)
    mem_rows = [
        [
            f"`tile_size=512` ({tiles}x{tiles} tiles)" if name == "tiled" else f"`tile_size={args.big}` (one tile)",
            f"{m['before'] / 2**20:.0f}",
            f"{m['peak'] / 2**20:.0f}",
            f"**{m['growth'] / 2**20:.0f}**",
            f"{m['wall']:.1f}",
        ]
        for name, m in memory.items()
    ]
    ratio = memory["one tile"]["growth"] / max(memory["tiled"]["growth"], 1)
    parts = [
        SECTION,
        "",
        machine_header(args.threads) + " The 2 cores are shared with other jobs: wall times scatter from run to run.",
        "",
        f"Reproduce: `{command_line()}` (add `--profile` for an op table).",
        "",
        f'`dream(face_recognition(resize=False), photo, "{LAYER}", octaves={args.octaves}, '
        f"steps_per_octave={args.steps})`: dlib's face-recognition ResNet with the trained face-api.js weights "
        f"(@vladmandic/face-api {FACE_API_VERSION}), photos normalized and not resized to 150 px, on {source}. "
        f"Octaves {', '.join(f'{h}x{w}' for h, w in sizes)} ({total_steps} steps, roll jitter {JITTER}, one "
        f"tile each). Floor: the same octave sizes, steps, jitter draws and update in a bare loop on "
        f"`nn.Sequential(preprocess, stem, {LAYER})`, frozen, eval mode, squared-L2 objective, "
        f"`torch.autograd.grad` to the input, step `1.5/255 * g / mean|g|`, clamp. One process, {args.reps} "
        f"`dream` runs each bracketed by floor runs after a 1-step-per-octave warm-up; each ratio is a `dream` "
        f"run over the mean of the two floor runs around it, then the median. Typical step: median interval "
        f"between consecutive `{LAYER}` forward passes per octave size, weighted by steps.",
        "",
        table(
            [
                "variant",
                "runs",
                "wall s per dream (median)",
                "min-max",
                "wall s/step",
                "typical step s",
                "x floor (typical step)",
                "x floor (whole dream, wall)",
                "x floor (typical, CPU)",
                "x floor (whole dream, CPU)",
            ],
            rows,
        ),
        "",
        f"- `dream` vs the bare loop: **{r['typical']:.3f}x** per typical step, {r['wall']:.3f}x for the whole "
        f"dream (wall; {r['cpu']:.3f}x CPU time): {verdict} the {TARGET:.2f}x target. Per-run ratios (typical "
        f"step): {', '.join(f'{v:.2f}' for v in ratios['typical'])}. A whole 512 px dream takes "
        f"{median(samples['dream']['wall']):.1f} s here.",
        "",
        f"Memory: the photo upscaled to {args.big}x{args.big}, `dream` at `{LAYER}`, {args.octaves} octaves "
        f"({', '.join(str(h) for h, _ in big_sizes)} px) x {args.big_steps} steps, each variant in a fresh "
        f"process; peak growth = `VmHWM` after the dream (reset through `/proc/self/clear_refs` once the model "
        f"and photo are loaded) minus `VmRSS` at that point.",
        "",
        table(["variant", "RSS before MiB", "peak RSS MiB", "peak growth MiB", "wall s"], mem_rows),
        "",
        f"- Tiles bound the memory: one tile takes {ratio:.1f}x the tiled peak growth at {args.big} px "
        f"(the tiled peak is that of a 512 px tile plus the full-size image, gradient and octave buffers).",
        "",
    ]
    if args.profile:
        log("profiling dream against the floor")
        parts += [
            "Profile (`--profile`, torch.profiler, self CPU time of one dream each, largest differences first):",
            "",
            profile_pair("floor", lambda: floor_run(args.steps), "dream", lambda: dream_run(args.steps)),
            "",
        ]
    publish(SECTION, parts, total, write=not args.no_write)


if __name__ == "__main__":
    main()
