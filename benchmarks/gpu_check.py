"""GPU check: the CUDA-capable tests and three GPU benchmarks, into benchmarks/RESULTS-gpu.md.

What ``make gpu-check`` runs on a machine with a CUDA GPU. Four parts, in this order (the bounded
benchmarks first, so that a slow test suite cannot take their results with it):

* **render**: ``interp.optvis.render`` against its floor on the GPU. torchvision
  ``resnet50(weights=None)`` (eval, frozen), 224 px, objective ``channel("layer3", 0)``, Adam lr
  0.05. ``render`` with a pixel parameterization (``param.image(fft=False, decorrelate=False)``)
  and no transforms against the floor: a bare Adam loop on a pixel tensor through a sigmoid and
  the network cut after ``layer3`` (``nn.Sequential(conv1, bn1, relu, maxpool, layer1, layer2,
  layer3)``). Seconds per step = the whole call (synchronized at its end) / steps; the two
  alternate, medians over the repetitions; the ratio of the medians (target <= 1.10x, the target
  of the CPU benchmark ``benchmarks/optvis_speed.py``).
* **dream**: ``interp.optvis.dream`` with the VGGFace2 ResNet-50 (``FaceResNet50(weights="random")``)
  at ``layer3`` on a 1024 px image (the astronaut photo), 4 octaves x 10 steps, default tiling
  (512 px tiles); seconds per call after one warm-up call, median (target < 2 s).
* **topk**: ``mine_topk`` of all 2048 channels of ``layer4`` of the same network (k=16, spatial
  max) over N synthetic 224 px uint8 images (N=50,000; ``--quick``: 5,000) against the bare pass
  to ``layer4`` (``forward_features`` under ``torch.inference_mode``) on the same batches. The
  images are a pool of random batches that stays on the GPU (no loading: the comparison is of the
  mining, not of a data pipeline). Throughput in images/s, the two alternating, medians; the ratio
  top-k / bare (target >= 90%). ``--bf16`` runs both under ``torch.autocast(bfloat16)``,
  ``--channels-last`` puts the network and the images in channels-last memory format (both
  options apply to this part only). If a warm-up pass shows N would not fit the time budget, N
  is lowered and the report says so.
* **tests**: ``pytest -q -m "not slow"`` with ``INTERP_TEST_DEVICE=cuda`` in the environment, in
  a subprocess, with the time left of the budget (``--budget``, default 450 s for the whole script)
  as its limit; on the limit it is interrupted (its summary so far is kept) and the report says so.

The report goes to ``benchmarks/RESULTS-gpu.md``, rewritten after every part (a part that was not
reached says "not run"; a part that fails says so with its error and gives no figure): the device
name (``torch.cuda.get_device_name()``), the date, and only figures measured in this run.

Without CUDA it prints one line and exits with 2. ``--dry-run`` (= ``--device cpu --quick`` at
tiny sizes, tests only collected) checks the script itself on a CPU; a CPU run never writes
``benchmarks/RESULTS-gpu.md``: its report goes to a temporary file (printed too).

Run from the repository root::

    .venv/bin/python -m benchmarks.gpu_check                     # ~5-8 min on one H200
    .venv/bin/python -m benchmarks.gpu_check --bf16 --channels-last --parts topk
    .venv/bin/python -m benchmarks.gpu_check --dry-run           # CPU smoke test, ~1 min
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import datetime
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
RESULTS_GPU = REPO / "benchmarks" / "RESULTS-gpu.md"
PARTS = ("render", "dream", "topk", "tests")
LR = 0.05
RENDER_TARGET = 1.10
DREAM_TARGET = 2.0
TOPK_TARGET = 0.90


@dataclass
class Sizes:
    """The workload sizes of a run (the GPU defaults, or tiny ones for a CPU smoke run)."""

    render_size: int = 224
    render_steps: int = 100
    render_reps: int = 5
    dream_size: int = 1024
    dream_octaves: int = 4
    dream_steps: int = 10
    dream_reps: int = 3
    topk_size: int = 224
    topk_n: int = 50_000
    topk_batch: int = 256
    topk_reps: int = 2
    topk_seconds: float = 150.0  # the most the top-k part may take (it lowers N to fit)

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            render_size=64,
            render_steps=3,
            render_reps=2,
            dream_size=96,
            dream_octaves=2,
            dream_steps=2,
            dream_reps=2,
            topk_size=64,
            topk_n=24,
            topk_batch=8,
            topk_reps=2,
            topk_seconds=60.0,
        )


def log(message: str) -> None:
    print(message, flush=True)


def fail(message: str) -> None:
    """One line on stderr and exit code 2 (an expected mistake, not a traceback)."""
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


# ----------------------------------------------------------------------------- the report


@dataclass
class Report:
    """The markdown report, rewritten in full after every part (only measured figures in it)."""

    path: Path | None
    header: list[str]
    sections: dict[str, list[str]] = field(default_factory=dict)

    def set(self, part: str, lines: list[str]) -> None:
        self.sections[part] = lines
        self.write()

    def text(self) -> str:
        out = list(self.header)
        for part in PARTS:
            if part in self.sections:
                out += ["", *self.sections[part]]
        return "\n".join(out).rstrip("\n") + "\n"

    def write(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.text())
        os.replace(tmp, self.path)


class Clock:
    """Wall seconds of a block, synchronizing the device at both ends."""

    def __init__(self, device: torch.device):
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], object]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start


def alternate(variants: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Each variant once per repetition, order rotated; ``{name: [its return value per rep]}``."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            samples[name].append(variants[name]())
            log(f"  rep {rep + 1}/{reps}: {name}: {samples[name][-1]:.6g}")
    return samples


def load_photo(size: int) -> tuple[torch.Tensor, str]:
    """The astronaut photo ([1, 3, size, size] in [0, 1]): ``$INTERP_DATA_DIR/images`` or the copy
    shipped in ``src/interp/assets``; a seeded random image where neither exists (the time of a
    dream does not depend on the content)."""
    candidates = [
        Path(os.environ.get("INTERP_DATA_DIR") or REPO.parent / "shared" / "data") / "images" / "astronaut.png",
        REPO / "src" / "interp" / "assets" / "astronaut.png",
    ]
    for path in candidates:
        if path.exists():
            from PIL import Image
            from torchvision.transforms.v2 import functional as TF

            with Image.open(path) as im:
                x = TF.pil_to_tensor(im.convert("RGB")).float().div(255).unsqueeze(0)
            source = f"{path.name} ({x.shape[-1]}x{x.shape[-2]}) resized to {size}x{size}"
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            return x.clamp(0, 1), source
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)), "a seeded random image"


# ----------------------------------------------------------------------------- parts


def part_render(device: torch.device, sizes: Sizes) -> list[str]:
    import torchvision

    from interp.optvis import objectives, param, render

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    cut = nn.Sequential(*(getattr(model, n) for n in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")))
    cut.eval()
    size, steps = sizes.render_size, sizes.render_steps
    clock = Clock(device)

    def floor() -> None:
        g = torch.Generator().manual_seed(0)
        pixels = (torch.randn(1, 3, size, size, generator=g) * 0.01).to(device).requires_grad_(True)
        opt = torch.optim.Adam([pixels], lr=LR)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            (-cut(torch.sigmoid(pixels))[:, 0].mean()).backward()
            opt.step()

    def interp_render() -> None:
        render(
            model,
            objectives.channel("layer3", 0),
            param=param.image((1, 3, size, size), fft=False, decorrelate=False),
            transforms=None,
            steps=steps,
            lr=LR,
        )

    floor_name, render_name = "floor: bare Adam on pixels, cut net", "render, pixel param, no transforms"
    variants = {
        floor_name: lambda: clock.time(floor) / steps,
        render_name: lambda: clock.time(interp_render) / steps,
    }
    log(f"render: warm-up, then {sizes.render_reps} reps of {steps} steps at {size} px")
    for fn in variants.values():
        fn()
    samples = alternate(variants, sizes.render_reps)
    ratio = median(samples[render_name]) / median(samples[floor_name])
    rows = [
        f"| {name} | {median(s) * 1e3:.3f} | {min(s) * 1e3:.3f}-{max(s) * 1e3:.3f} |" for name, s in samples.items()
    ]
    verdict = "meets" if ratio <= RENDER_TARGET else "misses"
    return [
        "## Render vs its floor",
        "",
        f'torchvision `resnet50(weights=None)`, {size} px, `channel("layer3", 0)`, Adam lr {LR}, '
        f"{steps} steps per call, {sizes.render_reps} repetitions after one warm-up, alternating; "
        f"ms/step = whole call (synchronized) / steps.",
        "",
        "| variant | ms/step (median) | min-max |",
        "|---|---:|---:|",
        *rows,
        "",
        f"`render` / floor: **{ratio:.3f}x** (target <= {RENDER_TARGET:.2f}x: {verdict}).",
    ]


def part_dream(device: torch.device, sizes: Sizes, face: nn.Module) -> list[str]:
    from interp.optvis import dream

    photo, source = load_photo(sizes.dream_size)
    clock = Clock(device)

    def call() -> None:
        dream(face, photo, "layer3", octaves=sizes.dream_octaves, steps_per_octave=sizes.dream_steps)

    log(f"dream: warm-up, then {sizes.dream_reps} calls at {sizes.dream_size} px")
    clock.time(call)
    seconds = [clock.time(call) for _ in range(sizes.dream_reps)]
    for i, s in enumerate(seconds):
        log(f"  rep {i + 1}/{len(seconds)}: dream: {s:.3f} s")
    best = median(seconds)
    verdict = "meets" if best < DREAM_TARGET else "misses"
    return [
        "## DeepDream, VGGFace2 ResNet-50",
        "",
        f'`FaceResNet50(weights="random")`, `layer3`, {source}, {sizes.dream_octaves} octaves x '
        f"{sizes.dream_steps} steps (default tiling, 512 px tiles), {sizes.dream_reps} calls after one "
        f"warm-up call.",
        "",
        f"Seconds per call: **{best:.3f} s** median (min-max {min(seconds):.3f}-{max(seconds):.3f}; "
        f"target < {DREAM_TARGET:.0f} s: {verdict}).",
    ]


def part_topk(device: torch.device, sizes: Sizes, face: nn.Module, bf16: bool, channels_last: bool) -> list[str]:
    from interp.optvis.topk import mine_topk

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = face.to(memory_format=fmt) if channels_last else face
    bs, size = sizes.topk_batch, sizes.topk_size
    g = torch.Generator().manual_seed(0)
    pool_batches = 4
    pool = (
        torch.randint(0, 256, (pool_batches * bs, 3, size, size), dtype=torch.uint8, generator=g)
        .to(device)
        .contiguous(memory_format=fmt)
    )
    clock = Clock(device)

    def batches(n: int) -> Iterator[torch.Tensor]:
        done = 0
        while done < n:
            start = (done // bs % pool_batches) * bs
            take = min(bs, n - done)
            yield pool[start : start + take]
            done += take

    def autocast():
        if bf16:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def bare(n: int) -> None:
        with torch.inference_mode(), autocast():
            for xb in batches(n):
                model.forward_features(xb.float().div_(255))

    def topk(n: int) -> None:
        with autocast():
            mine_topk(model, "layer4", batches(n), k=16)

    log("topk: warm-up")
    warm = 2 * bs
    clock.time(lambda: bare(warm))
    clock.time(lambda: topk(warm))
    per_image = max(clock.time(lambda: bare(warm)), clock.time(lambda: topk(warm))) / warm
    n = sizes.topk_n
    projected = per_image * n * 2 * sizes.topk_reps
    note = ""
    if projected > sizes.topk_seconds:
        fitted = max(bs, int(sizes.topk_seconds / (per_image * 2 * sizes.topk_reps)) // bs * bs)
        note = (
            f" N lowered from {n:,} to {fitted:,}: at the warm-up's {1 / per_image:,.0f} images/s "
            f"{n:,} would have taken ~{projected:.0f} s, over this part's {sizes.topk_seconds:.0f} s."
        )
        log(f"topk:{note}")
        n = fitted
    bare_name, topk_name = "bare pass to layer4", "mine_topk, 2048 channels, k=16"
    variants = {
        bare_name: lambda: n / clock.time(lambda: bare(n)),
        topk_name: lambda: n / clock.time(lambda: topk(n)),
    }
    log(f"topk: {sizes.topk_reps} reps of {n} images")
    samples = alternate(variants, sizes.topk_reps)
    ratio = median(samples[topk_name]) / median(samples[bare_name])
    rows = [f"| {name} | {median(s):,.0f} | {min(s):,.0f}-{max(s):,.0f} |" for name, s in samples.items()]
    verdict = "meets" if ratio >= TOPK_TARGET else "misses"
    precision = "bf16 autocast" if bf16 else "fp32 (default TF32 settings)"
    layout = "channels-last" if channels_last else "contiguous (NCHW)"
    return [
        "## Top-k of layer4 vs the bare forward pass",
        "",
        f'`FaceResNet50(weights="random")`, all 2048 channels of `layer4` (k=16, spatial max), {n:,} '
        f"synthetic {size} px uint8 images in batches of {bs} (a pool of {pool_batches} batches kept "
        f"on the device), {precision}, {layout}; {sizes.topk_reps} repetitions after a warm-up, "
        f"alternating.{note}",
        "",
        "| variant | images/s (median) | min-max |",
        "|---|---:|---:|",
        *rows,
        "",
        f"Top-k throughput / bare throughput: **{ratio:.1%}** (target >= {TOPK_TARGET:.0%}: {verdict}).",
    ]


def part_tests(device: torch.device, mode: str, seconds: float, extra: list[str]) -> tuple[list[str], bool]:
    """The tests in a subprocess: the report's lines, and whether they passed in time."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", *(["--co"] if mode == "collect" else []), *extra]
    env = dict(os.environ, INTERP_TEST_DEVICE=device.type)
    shown = f"INTERP_TEST_DEVICE={device.type} python -m pytest " + shlex.join(command[3:])
    log(f"tests: {shown} (limit {seconds:.0f} s)")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.send_signal(signal.SIGINT)  # pytest prints its summary of what ran so far
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    took = time.perf_counter() - start
    log(output)
    lines = [line for line in output.splitlines() if line.strip()]
    summary = lines[-1] if lines else "(no output)"
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    status = (
        f"interrupted at the time limit ({seconds:.0f} s)"
        if timed_out
        else f"exit code {proc.returncode} after {took:.0f} s"
    )
    what = "collected (`--co`; the smoke run does not run them)" if mode == "collect" else "run"
    out = [
        "## Tests",
        "",
        f"`{shown}`, {what}: {status}.",
        "",
        f"Summary: `{summary}`",
    ]
    if failed:
        out += ["", "Failures:", "", *[f"- `{line}`" for line in failed[:40]]]
        if len(failed) > 40:
            out.append(f"- ... and {len(failed) - 40} more")
    return out, proc.returncode == 0 and not timed_out


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dry-run", action="store_true", help="CPU smoke test: --device cpu --quick, tiny sizes")
    parser.add_argument("--quick", action="store_true", help="top-k over 5,000 images instead of 50,000")
    parser.add_argument("--bf16", action="store_true", help="top-k part under torch.autocast(bfloat16)")
    parser.add_argument("--channels-last", action="store_true", help="top-k part in channels-last memory format")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--topk-n", type=int, help="images for the top-k part (default 50,000; --quick 5,000)")
    parser.add_argument(
        "--tests", choices=["run", "collect"], help="run the tests, or only collect them (default: run; CPU: collect)"
    )
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, e.g. '-x -k topk'")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole script (tests get the rest)")
    parser.add_argument(
        "--tests-limit", type=float, help="seconds for the tests (default: what is left of --budget, at least 60)"
    )
    parser.add_argument("--out", type=Path, help="report path (default benchmarks/RESULTS-gpu.md on CUDA)")
    args = parser.parse_args()
    if args.dry_run:
        args.device, args.quick = "cpu", True
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or any(p not in PARTS for p in parts):
        parser.error(f"--parts: choose from {', '.join(PARTS)}")

    if args.device == "cuda" and not torch.cuda.is_available():
        fail(
            f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
            f"{torch.cuda.device_count()} devices): run it on a machine with an NVIDIA GPU, or "
            "`--dry-run` for a CPU smoke test"
        )
    device = torch.device(args.device)
    sizes = Sizes() if device.type == "cuda" else Sizes.smoke()
    if args.quick and device.type == "cuda":
        sizes.topk_n = 5_000
    if args.topk_n is not None:
        if args.topk_n < 1:
            parser.error("--topk-n must be >= 1")
        sizes.topk_n = args.topk_n

    if device.type == "cuda":
        out = args.out or RESULTS_GPU
        name = torch.cuda.get_device_name(device)
        cudnn = torch.backends.cudnn.version()
        where = f"**{name}** (`torch.cuda.get_device_name()`), CUDA {torch.version.cuda}, cuDNN {cudnn}"
    else:
        if args.out is not None and args.out.resolve() == RESULTS_GPU.resolve():
            fail("a CPU run does not write benchmarks/RESULTS-gpu.md (its figures are not GPU figures)")
        out = args.out or Path(tempfile.mkdtemp(prefix="interp-gpu-check-")) / "RESULTS-gpu.md"
        where = (
            "**CPU smoke run, tiny sizes: not GPU figures** (the targets are GPU targets; verdicts here mean nothing)"
        )
    start = time.perf_counter()
    header = [
        "# GPU check (benchmarks/gpu_check.py)",
        "",
        f"Date: {datetime.date.today().isoformat()}. Device: {where}; torch {torch.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU cores.",
        "",
        f"Reproduce: `{' '.join(['.venv/bin/python -m benchmarks.gpu_check', *map(shlex.quote, sys.argv[1:])])}`.",
    ]
    report = Report(out, header)
    for part in parts:
        report.sections[part] = [f"## {part}", "", "Not run (not reached: the run ended before this part)."]
    report.write()
    log(f"gpu_check on {where}; report: {out}")

    face: nn.Module | None = None

    def face_model() -> nn.Module:
        nonlocal face
        if face is None:
            from interp.models import FaceResNet50

            torch.manual_seed(0)
            face = FaceResNet50(weights="random").eval().to(device)
        return face

    problems = []
    for part in parts:
        elapsed = time.perf_counter() - start
        log(f"== {part} ({elapsed:.0f} s elapsed)")
        try:
            if part == "render":
                lines = part_render(device, sizes)
            elif part == "dream":
                lines = part_dream(device, sizes, face_model())
            elif part == "topk":
                lines = part_topk(device, sizes, face_model(), args.bf16, args.channels_last)
            else:
                mode = args.tests or ("run" if device.type == "cuda" else "collect")
                limit = args.tests_limit or max(60.0, args.budget - elapsed)
                lines, passed = part_tests(device, mode, limit, shlex.split(args.pytest_args))
                if not passed:
                    problems.append("tests")
        except Exception as exc:  # a part that fails gives its error, never a figure
            log(traceback.format_exc())
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            lines = [f"## {part}", "", f"FAILED: `{error}` (no figures)."]
            problems.append(part)
        report.set(part, lines)
    total = time.perf_counter() - start
    report.header = [*header, "", f"Whole check: {total:.0f} s."]
    report.write()
    log("")
    log(report.text())
    log(f"report written to {out}")
    if problems:
        log(f"gpu_check: did not pass: {', '.join(problems)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
