"""Legibility of feature visualizations: every view of the same units side by side, measured.

For ``dense_1`` units 0-63 of the default MNIST MLP and ``conv2`` channels 0-31 of the MNIST CNN
(``model=cnn``), five views of each unit are computed with the library:

* ``pixel_tv_l1``: ``render_units`` on a pixel-basis image (``param.image(fft=False,
  decorrelate=False)``) with ``-50 * TV - 30 * L1`` (the weights of configs/callbacks/featvis.yaml);
* ``lucid``: ``render_units`` with the default parameterization (Fourier basis; colour
  decorrelation only applies to 3 channels, so none for MNIST) and no regularizer;
* ``maco``: ``MacoParam`` (phase only) with the magnitude spectrum of the training images;
* ``prior``: ``LatentParam`` in the latent space of ``train_prior(datamodule)`` (cached), each
  unit starting from the mean code of its top-16 training examples and kept within
  ``default_radius`` of it, no transforms: what ``FeatureVisualization(views=[prior])`` does after a
  top-k of the same layer;
* ``prior_random``: the same from random codes (what the library does without a top-k);
* ``accentuation``: ``accentuate`` seeded with each unit's best training example;

all with 256 steps at lr 0.05, seed 0 and the default transforms (the prior views without),
except ``accentuation`` (its own defaults: 128 steps at lr 0.02, no transforms, held close at the
model's first layer). A reference row, ``best test digit``, is the test image that excites each
unit most: what real data reaches.

Per view and layer:

* **act / dataset max**: the activation the view reaches divided by the unit's largest activation
  over the 60,000 training images, the same statistic on both sides (conv: the maximum over
  positions, ``mine_topk(spatial="max")``); median over units.
* **>= 16th best**: fraction of units whose achieved activation is at least their 16th-best
  training example's.
* **plausibility** (MaCo, Fel et al. 2023): cosine similarity in the model's penultimate layer
  (``dense_2`` for the MLP, ``fc1`` for the CNN, outputs before their ReLU) between the view and the
  unit's top-16 training examples, minus the same against 16 random training examples (drawn per
  unit, seeded); mean over units.
* **observer agreement**: a classifier trained here, of another architecture than the model
  (a small CNN for the MLP's views, an MLP for the CNN's; never the library's models), labels the
  view; the share of units for which that label is the majority label of the unit's top-16
  examples, over units whose majority share is >= 0.5.
* **nearest / typical**: L2 distance (pixels in [0, 1]) from the view to its nearest training
  image (all 60,000) divided by the median nearest-training-image distance of 2,000 test
  images; median over units.
* **s per view**: wall seconds of the batched optimization of all units of one view.

Run from the repository root::

    .venv/bin/python -m benchmarks.legibility                   # trains both models first (~5 min)
    .venv/bin/python -m benchmarks.legibility --ckpt            # newest runs/mnist_mlp/*/checkpoints/last.ckpt
    .venv/bin/python -m benchmarks.legibility --skip-cnn --no-write
"""

from __future__ import annotations

import os

# Shared, oversubscribed CPUs: passive OpenMP waiting (set before torch loads OpenMP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import REPO, data_root, log, machine_header, table, write_section
from interp.data import MNISTDataModule
from interp.models import MnistMLP
from interp.models.cnn import MnistCNN
from interp.models.prior import train_prior
from interp.optvis import Capture, frozen, mine_topk, param, render_units
from interp.optvis import objectives as obj
from interp.optvis.accentuate import accentuate
from interp.optvis.latent import LatentParam, mean_codes
from interp.optvis.maco import MacoParam, magnitude_from_data
from interp.optvis.topk import TopK
from interp.steps.common import image_regularizer

SECTION = "## Legibility of feature visualizations (benchmarks/legibility.py)"
VIEWS = ("pixel_tv_l1", "lucid", "maco", "prior", "prior_random", "accentuation")
REFERENCE = "best test digit (reference)"
PNG = REPO / "docs" / "legibility_views.png"
THREADS = 2
STEPS, LR, SEED = 256, 0.05, 0
TV_WEIGHT, L1_WEIGHT = 50.0, 30.0  # configs/callbacks/featvis.yaml
K = 16


@dataclass
class LayerSpec:
    name: str  # a label for the report
    model_cls: type
    overrides: list[str]  # Hydra overrides of `python -m interp train`
    experiment: str
    layer: str
    units: list[int]
    penultimate: str
    default_ckpt_glob: str


#: the MNIST CNN's last conv layer (also benchmarks/conv_legibility.py's)
CNN_CONV2 = LayerSpec(
    "CNN conv2",
    MnistCNN,
    ["model=cnn"],
    "legibility_cnn",
    "conv2",
    list(range(32)),
    "fc1",
    "runs/legibility_cnn/*/checkpoints/last.ckpt",
)


@dataclass
class ViewResult:
    images: torch.Tensor  # [U, 1, 28, 28]
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    detail: dict[str, object] = field(default_factory=dict)


# ----------------------------------------------------------------------------- models


def newest(pattern: str) -> Path:
    paths = sorted(REPO.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not paths:
        raise SystemExit(f"no checkpoint matches {pattern} (train one first, or leave out --ckpt)")
    return paths[-1]


def train_subprocess(spec: LayerSpec) -> tuple[Path, float]:
    """``python -m interp train 'callbacks=[]' experiment=<spec.experiment> <overrides>``: the
    model of ``make train`` (seed 42, 5 epochs), without the interpretation callbacks."""
    runs = REPO / "runs" / spec.experiment
    before = set(runs.glob("*")) if runs.exists() else set()
    cmd = [
        sys.executable,
        "-m",
        "interp",
        "train",
        "callbacks=[]",
        f"experiment={spec.experiment}",
        "trainer.enable_progress_bar=false",
        *spec.overrides,
    ]
    log(f"training {spec.name}: {' '.join(cmd[1:])}")
    env = dict(
        os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), INTERP_DATA_DIR=str(data_root())
    )
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"training {spec.name} failed (exit {proc.returncode})")
    new = sorted(set(runs.glob("*")) - before, key=lambda p: p.stat().st_mtime)
    ckpt = (new[-1] if new else newest(f"runs/{spec.experiment}/*")) / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        raise SystemExit(f"training {spec.name} wrote no {ckpt}")
    return ckpt, seconds


def load_model(spec: LayerSpec, ckpt: Path) -> nn.Module:
    """The model of a checkpoint, read with ``weights_only=True``. ``interp train model=cnn`` stores
    its ``channels`` hyperparameter as an omegaconf ``ListConfig``, which a weights-only load refuses
    (so does ``interp.runs.load_checkpoint_file``): the omegaconf containers are allowed here, turned
    into plain values, and the model is rebuilt from them."""
    import collections
    import typing

    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode

    allowed = [
        ListConfig,
        DictConfig,
        ContainerMetadata,
        Metadata,
        AnyNode,
        typing.Any,
        list,
        dict,
        int,
        collections.defaultdict,
    ]
    with torch.serialization.safe_globals(allowed):
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    hparams = {
        k: OmegaConf.to_container(v) if isinstance(v, (ListConfig, DictConfig)) else v
        for k, v in saved["hyper_parameters"].items()
    }
    model = spec.model_cls(**hparams)
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def test_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        pred = torch.cat([model(images[i : i + 2000].float() / 255).argmax(1) for i in range(0, len(images), 2000)])
    return float((pred == labels).float().mean())


# ----------------------------------------------------------------------------- the observers


def observer_cnn() -> nn.Module:
    """A small convnet of our own (3x3 kernels with padding, max pooling, no hidden dense layer, no
    batch norm): unlike the MLP, and unlike the library's CNN."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


def observer_mlp() -> nn.Module:
    """A one-hidden-layer MLP of our own (tanh, 256 units): unlike the CNN."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 10))


class Standardize(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.1307) / 0.3081)


def train_observer(
    kind: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    epochs: int,
) -> tuple[nn.Module, float, float]:
    """Train an observer on the training split (uint8 images); (model, test accuracy, seconds)."""
    torch.manual_seed(0)
    net = Standardize(observer_cnn() if kind == "cnn" else observer_mlp())
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    n, bs = len(images), 128
    total = epochs * math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=total)
    start = time.perf_counter()
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(net(images[idx].float() / 255), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    seconds = time.perf_counter() - start
    return net, test_accuracy(net, test_images, test_labels), seconds


# ----------------------------------------------------------------------------- measurements


def unit_activation(
    model: nn.Module, layer: str, units: list[int], images: torch.Tensor, reduce: str = "max"
) -> torch.Tensor:
    """Row i: ``units[i]``'s activation on ``images[i]``, ``reduce`` (max or mean) over positions
    for conv layers, as ``mine_topk(spatial=reduce)`` records it for the dataset side."""
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        acts = cap(images)[layer]
    picked = acts[torch.arange(len(units)), torch.tensor(units)]
    if picked.dim() > 1:
        flat = picked.reshape(len(units), -1)
        picked = flat.amax(1) if reduce == "max" else flat.mean(1)
    return picked.float()


def features(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        out = [
            cap(images[i : i + 2000].float())[layer].reshape(min(2000, len(images) - i), -1)
            for i in range(0, len(images), 2000)
        ]
    return torch.cat(out)


def nearest_distance(queries: torch.Tensor, train_flat: torch.Tensor, train_sq: torch.Tensor) -> torch.Tensor:
    """L2 distance of each query [N, 784] to its nearest training image."""
    out = []
    for i in range(0, len(queries), 500):
        q = queries[i : i + 500]
        d2 = (q.pow(2).sum(1, keepdim=True) + train_sq[None, :] - 2 * q @ train_flat.T).clamp(min=0)
        out.append(d2.min(1).values.sqrt())
    return torch.cat(out)


@dataclass
class Context:
    """What every view of one layer is measured against."""

    model: nn.Module
    spec: LayerSpec
    top: TopK  # over the 60,000 training images
    best_mean: torch.Tensor | None  # conv: [U] dataset maximum of the mean over positions
    train_images: torch.Tensor  # uint8 [60000, 1, 28, 28] (indices of `top`)
    train_labels: torch.Tensor
    train_flat: torch.Tensor
    train_sq: torch.Tensor
    typical_nn: float
    observer: nn.Module
    majority: torch.Tensor  # [U] majority label of the top-16
    majority_share: torch.Tensor  # [U]
    top_feats: torch.Tensor  # [U, 16, D] penultimate features of the top-16
    random_feats: torch.Tensor  # [U, 16, D] of 16 random training images per unit


def build_context(model: nn.Module, spec: LayerSpec, train_images, train_labels, test_images, observer) -> Context:
    log(f"{spec.name}: mining the top-{K} of {spec.layer} over {len(train_images)} training images")
    top = mine_topk(model, spec.layer, train_images, k=K, units=spec.units, spatial="max")
    best_mean = None
    if spec.layer.startswith("conv"):
        best_mean = mine_topk(model, spec.layer, train_images, k=1, units=spec.units, spatial="mean").values[:, 0]
    labels = train_labels[top.indices]  # [U, 16]
    counts = F.one_hot(labels, 10).sum(1)
    share, majority = counts.max(1)
    flat = train_images.reshape(len(train_images), -1).float() / 255
    sq = flat.pow(2).sum(1)
    g = torch.Generator().manual_seed(1)
    test_pick = torch.randperm(len(test_images), generator=g)[:2000]
    typical = float(nearest_distance(test_images[test_pick].reshape(2000, -1).float() / 255, flat, sq).median())
    u = len(spec.units)
    rand_idx = torch.randint(len(train_images), (u, K), generator=g)
    feats_top = features(model, spec.penultimate, train_images[top.indices.reshape(-1)].float() / 255)
    feats_rand = features(model, spec.penultimate, train_images[rand_idx.reshape(-1)].float() / 255)
    return Context(
        model,
        spec,
        top,
        best_mean,
        train_images,
        train_labels,
        flat,
        sq,
        typical,
        observer,
        majority,
        share.float() / K,
        feats_top.reshape(u, K, -1),
        feats_rand.reshape(u, K, -1),
    )


def measure(ctx: Context, images: torch.Tensor) -> tuple[dict[str, float], dict[str, object]]:
    """The metrics of one view (images [U, 1, 28, 28] in [0, 1], row i = unit i)."""
    spec, top = ctx.spec, ctx.top
    acts = unit_activation(ctx.model, spec.layer, spec.units, images)
    best, kth = top.values[:, 0].float(), top.values[:, K - 1].float()
    ratio = acts / best
    ratio_mean = float("nan")
    if ctx.best_mean is not None:
        acts_mean = unit_activation(ctx.model, spec.layer, spec.units, images, reduce="mean")
        ratio_mean = float((acts_mean / ctx.best_mean.float()).median())
    above_max = float((acts >= best).float().mean())
    above_kth = float((acts >= kth).float().mean())
    f = features(ctx.model, spec.penultimate, images)  # [U, D]
    cos_top = F.cosine_similarity(f[:, None, :], ctx.top_feats, dim=2).mean(1)
    cos_rand = F.cosine_similarity(f[:, None, :], ctx.random_feats, dim=2).mean(1)
    plaus = cos_top - cos_rand
    with torch.no_grad():
        pred = ctx.observer(images).argmax(1)
    eligible = ctx.majority_share >= 0.5
    agree = (pred == ctx.majority)[eligible].float()
    nn_ratio = nearest_distance(images.reshape(len(images), -1), ctx.train_flat, ctx.train_sq) / ctx.typical_nn
    metrics = {
        "ratio_median": float(ratio.median()),
        "ratio_mean_median": ratio_mean,
        "above_max": above_max,
        "above_kth": above_kth,
        "plaus_mean": float(plaus.mean()),
        "cos_top_mean": float(cos_top.mean()),
        "agree": float(agree.mean()) if agree.numel() else float("nan"),
        "eligible": int(eligible.sum()),
        "nn_median": float(nn_ratio.median()),
    }
    detail = {"ratio": ratio, "acts": acts, "pred": pred, "nn": nn_ratio, "plaus": plaus}
    return metrics, detail


# ----------------------------------------------------------------------------- the views


def compute_views(
    ctx: Context, datamodule: MNISTDataModule, magnitude: torch.Tensor, prior: nn.Module, only: list[str]
) -> dict[str, ViewResult]:
    spec, model = ctx.spec, ctx.model
    units, layer, u = spec.units, spec.layer, len(spec.units)
    shape = (1, 28, 28)
    out: dict[str, ViewResult] = {}

    def timed_render(name: str, fn) -> None:
        log(f"{spec.name}: view {name} ({u} units)")
        start = time.perf_counter()
        images = fn()
        seconds = time.perf_counter() - start
        out[name] = ViewResult(images.detach().cpu().clamp(0, 1), seconds)
        log(f"  {seconds:.1f} s")

    common = dict(steps=STEPS, lr=LR, seed=SEED, transforms="default", shape=shape)
    if "pixel_tv_l1" in only:
        timed_render(
            "pixel_tv_l1",
            lambda: (
                render_units(
                    model,
                    layer,
                    units,
                    param=param.image((u, *shape), fft=False, decorrelate=False, seed=SEED),
                    regularizer=image_regularizer(TV_WEIGHT, L1_WEIGHT),
                    **common,
                ).image
            ),
        )
    if "lucid" in only:
        timed_render("lucid", lambda: render_units(model, layer, units, **common).image)
    if "maco" in only:
        timed_render(
            "maco",
            lambda: (
                render_units(
                    model, layer, units, param=MacoParam((u, *shape), magnitude=magnitude, seed=SEED), **common
                ).image
            ),
        )
    latent = dict(common, transforms=None)
    if "prior" in only:

        def from_examples() -> torch.Tensor:
            starts = mean_codes(prior.encode, ctx.train_images[ctx.top.indices])  # type: ignore[operator]
            view = LatentParam(prior.decoder, batch=u, seed=SEED, start=starts)  # type: ignore[arg-type]
            return render_units(model, layer, units, param=view, **latent).image

        timed_render("prior", from_examples)
    if "prior_random" in only:
        timed_render(
            "prior_random",
            lambda: (
                render_units(
                    model,
                    layer,
                    units,
                    param=LatentParam(prior.decoder, batch=u, seed=SEED),
                    **latent,  # type: ignore[arg-type]
                ).image
            ),
        )
    if "accentuation" in only:
        seeds = ctx.train_images[ctx.top.indices[:, 0]].float() / 255
        timed_render("accentuation", lambda: accentuate(model, obj.channel(layer, units), seeds, seed=SEED).image)
    return out


def reference_view(ctx: Context, test_images: torch.Tensor) -> ViewResult:
    """The test digit with the largest activation of each unit (same statistic)."""
    start = time.perf_counter()
    best = mine_topk(ctx.model, ctx.spec.layer, test_images, k=1, units=ctx.spec.units, spatial="max")
    images = test_images[best.indices[:, 0]].float() / 255
    return ViewResult(images, time.perf_counter() - start)


# ----------------------------------------------------------------------------- report


def fmt(x: float, pct: bool = False) -> str:
    if x != x:  # NaN
        return "n/a"
    return f"{100 * x:.0f}%" if pct else f"{x:.2f}"


def layer_table(ctx: Context, results: dict[str, ViewResult]) -> str:
    rows = []
    for name, r in results.items():
        m = r.metrics
        secs = "-" if name == REFERENCE else f"{r.seconds:.1f} ({r.seconds / len(ctx.spec.units):.2f})"
        rows.append(
            [
                f"`{name}`" if name != REFERENCE else name,
                fmt(m["ratio_median"]),
                "(same)" if ctx.best_mean is None else fmt(m["ratio_mean_median"]),
                fmt(m["above_max"], True),
                fmt(m["above_kth"], True),
                f"{m['plaus_mean']:+.3f} ({m['cos_top_mean']:.2f})",
                f"{fmt(m['agree'], True)} (of {m['eligible']})",
                fmt(m["nn_median"]),
                secs,
            ]
        )
    header = [
        "view",
        "act / dataset max (median)",
        "same, mean over positions",
        ">= dataset max",
        ">= 16th best",
        "plausibility (mean; cos to top-16)",
        "observer agreement",
        "nearest / typical (median)",
        "s per view (per unit)",
    ]
    return table(header, rows)


def targets_table(mlp: dict[str, ViewResult]) -> str:
    def row(what, target, value, ok, shown):
        return [what, target, shown, "meets" if ok else "misses"]

    rows = []
    p = mlp.get("prior")
    if p is not None:
        m = p.metrics
        rows += [
            row("`prior`, observer agreement", ">= 80%", m["agree"], m["agree"] >= 0.8, fmt(m["agree"], True)),
            row("`prior`, nearest / typical", "<= 1.5", m["nn_median"], m["nn_median"] <= 1.5, fmt(m["nn_median"])),
            row(
                "`prior`, units >= 16th best",
                ">= 90%",
                m["above_kth"],
                m["above_kth"] >= 0.9,
                fmt(m["above_kth"], True),
            ),
            row(
                "`prior`, act / dataset max (median)",
                ">= 1.0",
                m["ratio_median"],
                m["ratio_median"] >= 1.0,
                fmt(m["ratio_median"]),
            ),
        ]
    q = mlp.get("pixel_tv_l1")
    if q is not None:
        m = q.metrics
        rows.append(
            row(
                "`pixel_tv_l1`, units >= dataset max",
                ">= 95%",
                m["above_max"],
                m["above_max"] >= 0.95,
                fmt(m["above_max"], True),
            )
        )
    return table(["dense_1 (MLP)", "target", "measured", "verdict"], [r for r in rows], align="llrl")


def save_grid(panels: list[tuple[str, Context, dict[str, ViewResult]]], n: int = 16) -> None:
    """Rows: units 0..n-1; columns: the unit's best training digit, then every view (one block per
    model, side by side), with column titles."""
    from PIL import Image, ImageDraw

    scale, pad, title_h, label_w = 3, 4, 30, 34
    cell = 28 * scale
    blocks = []
    for title, ctx, results in panels:
        cols = [("top-1 train", ctx.train_images[ctx.top.indices[:n, 0]].float() / 255)]
        cols += [(name.replace(" (reference)", ""), r.images[:n]) for name, r in results.items()]
        width = label_w + len(cols) * (cell + pad)
        height = title_h + 14 + n * (cell + pad)
        canvas = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(canvas)
        draw.text((label_w, 2), title, fill=0)
        for c, (name, imgs) in enumerate(cols):
            x0 = label_w + c * (cell + pad)
            draw.text((x0, title_h - 10), name[:14], fill=0)
            for r in range(min(n, len(imgs))):
                y0 = title_h + 14 + r * (cell + pad)
                arr = (imgs[r, 0].clamp(0, 1) * 255).round().to(torch.uint8)
                tile = Image.fromarray(arr.numpy(), mode="L").resize((cell, cell), Image.Resampling.NEAREST)
                canvas.paste(tile, (x0, y0))
                if c == 0:
                    draw.text((2, y0 + cell // 2 - 5), str(ctx.spec.units[r]), fill=0)
        blocks.append(canvas)
    total_w = sum(b.width for b in blocks) + 16 * (len(blocks) - 1)
    out = Image.new("L", (total_w, max(b.height for b in blocks)), 255)
    x = 0
    for b in blocks:
        out.paste(b, (x, 0))
        x += b.width + 16
    PNG.parent.mkdir(parents=True, exist_ok=True)
    out.save(PNG)
    log(f"saved {PNG.relative_to(REPO)}")


# ----------------------------------------------------------------------------- main


def ckpt_arg(value: str | None, spec: LayerSpec) -> Path | None:
    if value is None:
        return None
    return newest(spec.default_ckpt_glob) if value == "newest" else Path(value)


def reproduce() -> str:
    """The command that reproduces this run, as run from the repository root."""
    return " ".join([".venv/bin/python -m benchmarks.legibility", *sys.argv[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt",
        nargs="?",
        const="newest",
        default=None,
        help="use this MLP checkpoint instead of training (no value: the newest "
        "runs/mnist_mlp/*/checkpoints/last.ckpt)",
    )
    parser.add_argument(
        "--cnn-ckpt",
        nargs="?",
        const="newest",
        default=None,
        help="use this CNN checkpoint instead of training (no value: the newest "
        "runs/legibility_cnn/*/checkpoints/last.ckpt)",
    )
    parser.add_argument("--skip-cnn", action="store_true", help="only the MLP")
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated subset of " + ",".join(VIEWS))
    parser.add_argument("--observer-epochs", type=int, default=2)
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave RESULTS.md alone (the PNG is still saved)"
    )
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    wall_start = time.perf_counter()
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    bad = [v for v in views if v not in VIEWS]
    if bad:
        raise SystemExit(f"unknown views {bad}: use {', '.join(VIEWS)}")

    specs = [
        LayerSpec(
            "MLP dense_1",
            MnistMLP,
            [],
            "legibility",
            "dense_1",
            list(range(64)),
            "dense_2",
            "runs/mnist_mlp/*/checkpoints/last.ckpt",
        )
    ]
    if not args.skip_cnn:
        specs.append(CNN_CONV2)

    dm = MNISTDataModule(root=str(data_root()), download=False)
    dm.setup()
    train_images, train_labels = dm.full_train_set.images, dm.full_train_set.labels  # 60,000, mining order
    test_images, test_labels = dm.test_set.images, dm.test_set.labels
    fit_images, fit_labels = dm.train_set.images, dm.train_set.labels  # the 55,000 the models trained on

    start = time.perf_counter()
    prior = train_prior(dm)
    prior_s = time.perf_counter() - start
    log(f"prior: {'from the cache' if prior.from_cache else 'trained'} in {prior_s:.1f} s ({prior.cache_path})")
    start = time.perf_counter()
    magnitude = magnitude_from_data(fit_images, (28, 28))
    magnitude_s = time.perf_counter() - start

    setup_lines, panels = [], []
    all_results: dict[str, dict[str, ViewResult]] = {}
    for spec in specs:
        given = ckpt_arg(args.ckpt if spec.model_cls is MnistMLP else args.cnn_ckpt, spec)
        if given is None:
            ckpt, train_s = train_subprocess(spec)
            how = (
                f"trained here: `python -m interp train 'callbacks=[]' experiment={spec.experiment}"
                f"{' ' + ' '.join(spec.overrides) if spec.overrides else ''}` ({train_s:.0f} s)"
            )
        else:
            ckpt, how = given, "loaded"
        model = load_model(spec, ckpt)
        acc = test_accuracy(model, test_images, test_labels)
        kind = "cnn" if spec.model_cls is MnistMLP else "mlp"
        log(f"{spec.name}: test accuracy {acc:.4f}; training the observer ({kind})")
        observer, obs_acc, obs_s = train_observer(
            kind, fit_images, fit_labels, test_images, test_labels, args.observer_epochs
        )
        log(f"  observer test accuracy {obs_acc:.4f} ({obs_s:.0f} s)")
        ctx = build_context(model, spec, train_images, train_labels, test_images, observer)
        results = compute_views(ctx, dm, magnitude, prior, views)
        results[REFERENCE] = reference_view(ctx, test_images)
        for name, r in results.items():
            r.metrics, r.detail = measure(ctx, r.images)
            m = r.metrics
            log(
                f"  {name}: ratio {m['ratio_median']:.2f}, >=max {m['above_max']:.2f}, >=16th {m['above_kth']:.2f}, "
                f"plaus {m['plaus_mean']:+.3f}, agree {m['agree']:.2f} ({m['eligible']}), nn {m['nn_median']:.2f}"
            )
        observer_desc = (
            "a CNN (3x3 convs 16-32 with padding, max pooling, linear read-out)"
            if kind == "cnn"
            else "an MLP (784-256 tanh-10)"
        )
        shown = ckpt.relative_to(REPO) if ckpt.is_relative_to(REPO) else ckpt
        setup_lines.append(
            f"* **{spec.name}**, units {spec.units[0]}-{spec.units[-1]}: `{shown}`"
            f" ({how}); test accuracy {100 * acc:.2f}%. Observer: {observer_desc}, {args.observer_epochs} epochs on "
            f"the 55,000 training digits, test accuracy {100 * obs_acc:.2f}% ({obs_s:.0f} s). "
            f"{int((ctx.majority_share >= 0.5).sum())} of {len(spec.units)} units have a top-16 majority "
            f"label share >= 0.5. Typical nearest test-to-train distance: {ctx.typical_nn:.2f}."
        )
        all_results[spec.name] = results
        panels.append((spec.name, ctx, results))
        print(layer_table(ctx, results), flush=True)

    total_s = time.perf_counter() - wall_start
    parts = [
        SECTION,
        "",
        f"{machine_header(THREADS)} Reproduce: `{reproduce()}` (MNIST from `$INTERP_DATA_DIR`, default "
        f"`../shared/data`); the whole run took {total_s / 60:.1f} min.",
        "",
        "Every view of the same units side by side (see the module docstring for the definitions). Views: "
        f"`pixel_tv_l1` = `render_units` on a pixel-basis image with `-{TV_WEIGHT:g}*TV - {L1_WEIGHT:g}*L1`; "
        "`lucid` = default parameterization (Fourier basis; no colour decorrelation for 1 channel), no "
        "regularizer; `maco` = `MacoParam` with the training digits' magnitude spectrum; `prior` = "
        "`LatentParam` on the decoder of `train_prior(datamodule)`, each unit starting at the mean code of its "
        "top-16 training digits and kept within `default_radius` (2) of it and `default_max_norm` (8) of the "
        "origin (what `FeatureVisualization(views=[prior])` does after a top-k of the layer); `prior_random` = "
        "the same from random codes (the library without a top-k); all with "
        f"{STEPS} Adam steps at lr {LR}, seed {SEED}, the default transforms (none for the two prior views), "
        "one batched run per view. The prior's settings (beta 0.5, the radii) were chosen on `dense_1` units "
        "64-191; the table reports units 0-63. "
        "`accentuation` = `accentuate` (its defaults: 128 steps, lr 0.02, `reg_weight` 30 at the first layer, "
        "no transforms) seeded with each unit's best training digit. Reference row: for each unit the test "
        "digit that excites it most.",
        "",
        "Columns: *act / dataset max*: activation reached over the unit's maximum over the 60,000 training "
        'digits, same statistic on both sides (conv2: max over positions, `mine_topk(spatial="max")`; the '
        "views optimize the mean over positions), median over units; *same, mean over positions*: the same "
        "ratio with the mean over positions on both sides (conv2 only); *>= dataset max*, *>= 16th best*: "
        "share of units whose activation reaches their best / 16th-best training digit; *plausibility*: mean "
        "over units of cos(view, top-16) - cos(view, 16 random training digits) in the penultimate layer "
        "(`dense_2` / `fc1`, before ReLU), the mean cos to the top-16 in brackets; *observer agreement*: how "
        "often an independently trained classifier labels the view as the majority label of the unit's "
        "top-16, over the units whose majority share is >= 0.5; *nearest / typical*: L2 distance to the "
        "nearest of all 60,000 training digits over the median nearest-training distance of 2,000 test digits, "
        "median over units; *s per view*: wall seconds of the one batched optimization of all units, per unit "
        f"in brackets. One-time costs: the prior {prior_s:.1f} s ({'cache' if prior.from_cache else 'trained'}), "
        f"the magnitude spectrum {magnitude_s:.2f} s.",
        "",
        *setup_lines,
        "",
    ]
    for name, results in all_results.items():
        ctx = next(c for t, c, _ in panels if t == name)
        parts += [f"**{name}** (`{ctx.spec.layer}`, {len(ctx.spec.units)} units):", "", layer_table(ctx, results), ""]
    mlp = all_results.get("MLP dense_1")
    if mlp:
        title = "Targets (the prior view's settings chosen on units 64-191, measured here on units 0-63):"
        parts += [title, "", targets_table(mlp), ""]
    parts += ["Views of units 0-15: [docs/legibility_views.png](../docs/legibility_views.png).", ""]
    text = "\n".join(parts)
    print(text)
    save_grid(panels)
    if args.no_write:
        log("--no-write: RESULTS.md left alone")
        return
    write_section(SECTION, text)


if __name__ == "__main__":
    main()
