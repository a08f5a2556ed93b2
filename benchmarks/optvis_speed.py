"""Speed of feature visualization (``render``) and DeepDream (``dream``) against bare loops.

torchvision ResNet-50 (random weights), 224x224 input, CPU. The FLOOR of one optimization step
is a bare loop: Adam on a pixel tensor (through a sigmoid, as ``param.image(fft=False)``), the
network cut after ``layer3`` as ``nn.Sequential(conv1, bn1, relu, maxpool, layer1, layer2,
layer3)`` in eval mode with frozen weights, objective = mean of channel 0 of ``layer3``.

Render variants, ``channel("layer3", 0)``:

* ``render`` like for like: ``param.image((1, 3, 224, 224), fft=False, decorrelate=False)``,
  ``transforms=None`` (the same computation as the floor);
* ``render`` with its defaults (Fourier + colour-decorrelated parameterization, Lucid's
  transforms: pad 12, jitter 8, scale 0.9-1.1, rotate +-10 degrees, jitter 4);
* the same default parameterization and transforms in a bare loop (no ``render``), to tell the
  cost of the components from the cost of ``render`` itself.

Dream: ``dream(model, photo 224px, "layer3", octaves=3, steps_per_octave=10)`` against a bare loop
with the same octave sizes (1.4 apart), roll jitter 32, forward to ``layer3`` through the cut
network, squared-L2 objective, gradient to the input, step ``1.5/255 * g / mean|g|``, clamp.

Steps are timed two ways: the whole call divided by its steps, and the *typical step*: the
median interval between consecutive steps (ticks after each optimizer step for the renders, after
each forward pass through ``layer3`` for the dreams, per octave size), which leaves out the setup
and the final scoring pass of ``render`` (what a 256-step render pays per step) and is barely
moved by bursts of contention from other jobs. All variants alternate repetition by repetition in
one process; medians over the repetitions are reported.

Run from the repository root::

    .venv/bin/python -m benchmarks.optvis_speed             # ~3 min on 2 busy cores
    .venv/bin/python -m benchmarks.optvis_speed --profile --no-write
"""

from __future__ import annotations

import os

# Shared, oversubscribed CPUs: OpenMP threads that spin at barriers make 2-thread kernels up to
# 10x slower and very noisy when another process holds a core. Sleep instead (must be set before
# torch loads its OpenMP runtime); an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from benchmarks.common import (
    StepClock,
    Stopwatch,
    add_run_options,
    bare_default_render,
    bare_dream,
    command_line,
    cut_network,
    data_root,
    floor_adam,
    interleave,
    log,
    machine_header,
    median,
    paired_ratio,
    profile_pair,
    publish,
    spread,
    table,
)
from interp.optvis import (
    dream,
    objectives,
    octave_sizes,
    param,
    render,
)

SECTION = "## Feature visualization and DeepDream speed (benchmarks/optvis_speed.py)"
SIZE = 224
LR = 0.05


def timed_adam(clock: StepClock, lr: float = LR):
    """A factory for ``render(optimizer=...)``: Adam that ticks ``clock`` after every step."""

    class TimedAdam(torch.optim.Adam):
        def step(self, closure=None):
            out = super().step(closure)
            clock.tick()
            return out

    return lambda params: TimedAdam(params, lr=lr)


@contextlib.contextmanager
def tick_at(module: nn.Module, clock: StepClock):
    """Tick ``clock`` whenever ``module`` finishes a forward pass (key: the output's H, W)."""
    handle = module.register_forward_hook(lambda m, i, out: clock.tick(tuple(out.shape[-2:])))
    try:
        yield
    finally:
        handle.remove()


def load_photo() -> torch.Tensor:
    """The astronaut photo of the shared data at 224x224 ([1, 3, H, W] in [0, 1]); a seeded random
    image where it is missing (the speed does not depend on the content)."""
    path = data_root() / "images" / "astronaut.png"
    if path.exists():
        from PIL import Image
        from torchvision.transforms.v2 import functional as TF

        with Image.open(path) as im:
            x = TF.pil_to_tensor(im.convert("RGB")).float().div(255).unsqueeze(0)
        return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- bare loops


def channel0(acts: torch.Tensor) -> torch.Tensor:
    """The objective of the renders, ``channel("layer3", 0)``, on the cut network's output."""
    return acts[:, 0].mean()


def floor_render(cut: nn.Module, steps: int, clock: StepClock, seed: int = 0) -> None:
    """Adam on pixels -> sigmoid -> cut network -> mean of channel 0 of layer3."""
    floor_adam(cut, (1, 3, SIZE, SIZE), steps, channel0, LR, seed=seed, on_step=clock.tick)


def bare_default_loop(cut: nn.Module, steps: int, clock: StepClock, seed: int = 0) -> None:
    """The floor with render's default parameterization and transforms, without ``render``."""
    bare_default_render(cut, SIZE, steps, channel0, LR, seed=seed, on_step=clock.tick)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions of each variant")
    parser.add_argument("--steps", type=int, default=10, help="optimization steps per render repetition")
    parser.add_argument("--dream-steps", type=int, default=10, help="steps per octave of DeepDream")
    parser.add_argument("--octaves", type=int, default=3)
    add_run_options(parser, profile_help="add torch.profiler op tables (render vs floor, dream vs bare)")
    args = parser.parse_args()
    if args.steps < 2 or args.dream_steps < 2:
        parser.error("--steps and --dream-steps must be >= 2 (a typical step needs two steps)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cut = cut_network(model)
    objective = objectives.channel("layer3", 0)
    photo = load_photo()
    steps, dsteps, octaves = args.steps, args.dream_steps, args.octaves
    dream_total_steps = octaves * dsteps
    log(
        f"ResNet-50 (random weights) at {SIZE}px, {args.threads} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; render {steps} steps, "
        f"dream {octaves} octaves x {dsteps} steps, {args.reps} reps"
    )

    clocks: dict[str, StepClock] = {}
    steady_wall: dict[str, list[float]] = {}
    steady_cpu: dict[str, list[float]] = {}

    def render_pixel(clock):
        render(
            model,
            objective,
            param=param.image((1, 3, SIZE, SIZE), fft=False, decorrelate=False),
            transforms=None,
            steps=steps,
            optimizer=timed_adam(clock),
        )

    def dream_bare(clock):
        with tick_at(model.layer3, clock):
            bare_dream(cut, photo, octaves, dsteps)

    def dream_interp(clock):
        with tick_at(model.layer3, clock):
            dream(model, photo, "layer3", octaves=octaves, steps_per_octave=dsteps)

    def render_default(clock):
        render(model, objective, shape=(3, SIZE, SIZE), steps=steps, optimizer=timed_adam(clock))

    floor, like = "floor: bare Adam on pixels, cut net", "render, pixel param, no transforms"
    bare_default, default = "bare loop, default param + transforms", "render, defaults (fft, decorrelate, transforms)"
    bare_d, interp_d = "bare DeepDream loop, cut net", "interp dream"
    # name -> (run(clock), steps per call, the variant it is compared with)
    spec = {
        floor: (lambda c: floor_render(cut, steps, c), steps, floor),
        like: (render_pixel, steps, floor),
        bare_default: (lambda c: bare_default_loop(cut, steps, c), steps, floor),
        default: (render_default, steps, bare_default),
        # dream() takes no optimizer: both dream loops tick when layer3 (shared) has run.
        bare_d: (lambda c: dream_bare(c), dream_total_steps, bare_d),
        interp_d: (lambda c: dream_interp(c), dream_total_steps, bare_d),
    }

    def make(name):
        def run():
            clocks[name] = StepClock()
            spec[name][0](clocks[name])

        return run

    def measure(name, fn):
        watch = Stopwatch()
        watch.start()
        fn()
        watch.stop()
        typical = clocks[name].typical_step()
        if typical is not None:
            steady_wall.setdefault(name, []).append(typical[0])
            steady_cpu.setdefault(name, []).append(typical[1])
        n = spec[name][1]
        return watch.wall / n, watch.cpu / n

    total_start = time.perf_counter()
    wall, cpu = interleave({name: make(name) for name in spec}, reps=args.reps, warmup=1, measure=measure)
    total = time.perf_counter() - total_start

    def ratio(samples, name):
        ref = spec[name][2]
        if name not in samples or ref not in samples:
            return None
        return median(samples[name]) / median(samples[ref])

    def fmt(x, digits=3):
        return "-" if x is None else f"{x:.{digits}f}"

    rows = []
    for name in spec:
        ref = spec[name][2]
        rows.append(
            [
                name,
                "-" if ref == name else f"`{ref.split(':')[0].split(',')[0]}`",
                f"{median(wall[name]):.4f}",
                spread(wall[name]),
                fmt(ratio(wall, name)),
                fmt(paired_ratio(wall[name], wall[ref])),
                fmt(median(steady_wall[name]) if name in steady_wall else None, 4),
                fmt(ratio(steady_wall, name)),
                fmt(ratio(cpu, name)),
                fmt(ratio(steady_cpu, name)),
            ]
        )

    def verdict(r):
        return "meets" if r <= 1.10 else "misses"

    r_like_st, r_like_st_cpu = ratio(steady_wall, like), ratio(steady_cpu, like)
    r_like, r_default_bare = ratio(wall, like), ratio(steady_wall, default)
    r_default_floor = median(steady_wall[default]) / median(steady_wall[floor])
    r_dream, r_dream_cpu = ratio(wall, interp_d), ratio(cpu, interp_d)
    r_dream_st, r_dream_st_cpu = ratio(steady_wall, interp_d), ratio(steady_cpu, interp_d)
    notes = [
        f"`render` like for like vs the floor: **{r_like_st:.3f}x** per typical step, wall "
        f"({r_like_st_cpu:.3f}x CPU; {verdict(r_like_st)} the 1.10x target); {r_like:.3f}x for the "
        f"whole {steps}-step call, which also pays the setup and the final scoring forward pass once.",
        f"`render` with its defaults: {r_default_bare:.3f}x the same parameterization and transforms "
        f"in a bare loop, {r_default_floor:.3f}x the pixel floor (typical step, wall): the Fourier "
        f"parameterization and the transforms cost the difference to the floor (the transformed "
        f"image is 236 px on average, not 224).",
        f"`dream` vs the bare DeepDream loop: **{r_dream_st:.3f}x** per typical step, wall "
        f"({r_dream_st_cpu:.3f}x CPU; {verdict(r_dream_st)} the 1.10x target); {r_dream:.3f}x wall "
        f"({r_dream_cpu:.3f}x CPU) for whole calls of {octaves} octaves x {dsteps} steps.",
    ]

    profile_text = []
    if args.profile:
        log("profiling render (like for like) against the floor, dream against the bare loop")
        profile_text = [
            "",
            f"Profile (`--profile`, torch.profiler, self CPU time of one {steps}-step run each; "
            f"the largest differences first):",
            "",
            profile_pair(
                "floor", lambda: floor_render(cut, steps, StepClock()), "render", lambda: render_pixel(StepClock())
            ),
            "",
            profile_pair(
                "bare dream",
                lambda: bare_dream(cut, photo, octaves, dsteps),
                "dream",
                lambda: dream(model, photo, "layer3", octaves=octaves, steps_per_octave=dsteps),
            ),
        ]

    parts = [
        SECTION,
        "",
        machine_header(args.threads),
        "",
        f"Reproduce: `{command_line()}` (add `--profile` for op tables).",
        "",
        f"torchvision ResNet-50, random weights, eval mode, frozen, {SIZE}x{SIZE}, objective "
        f'`channel("layer3", 0)` (dream: `layer_l2("layer3")`), Adam lr {LR}. Floor: bare Adam '
        f"loop on a pixel tensor through a sigmoid and `nn.Sequential(conv1, bn1, relu, maxpool, "
        f"layer1, layer2, layer3)`. Each repetition runs {steps} render steps, or one dream of "
        f"{octaves} octaves x {dsteps} steps (sizes "
        f"{', '.join(f'{h}' for h, _ in octave_sizes(SIZE, SIZE, octaves, 1.4))} px); "
        f"{args.reps} repetitions after one warm-up round, all variants interleaved (order rotated). "
        f"s/step (call) = whole call / steps; typical step = median interval between consecutive "
        f"steps (after each optimizer step for renders, after each `layer3` forward for dreams, "
        f"per octave size), median over the repetitions.",
        "",
        "Wall time is what a user waits; CPU time (this process, both threads) is less "
        "disturbed by other jobs on a shared machine.",
        "",
        table(
            [
                "variant",
                "compared with",
                "wall s/step (call)",
                "min-max",
                "wall ratio (call)",
                "paired wall ratio (call)",
                "typical step wall s",
                "typical step wall ratio",
                "CPU ratio (call)",
                "typical step CPU ratio",
            ],
            rows,
        ),
        "",
        *[f"- {n}" for n in notes],
        *profile_text,
        "",
    ]
    publish(SECTION, parts, total, write=not args.no_write)


if __name__ == "__main__":
    main()
