"""Feature visualization of conv channels that is both maximal and legible: MNIST CNN ``conv2``.

For channels 0-31 of ``conv2`` of the default CNN (``python -m interp train model=cnn``), every
candidate view is computed and measured with the statistics of :mod:`benchmarks.legibility`
(imported from there, not copied):

* **act / dataset max**: the spatial maximum of the channel map on the view over the channel's
  largest spatial maximum on the 60,000 training digits (``mine_topk(spatial="max")``), median;
* **>= 16th best**: share of channels whose view reaches their 16th-best training digit
  (target: >= 90%);
* **observer agreement**: an MLP trained here (784-256 tanh-10, another architecture than the CNN)
  labels the view; share of the channels whose top-16 majority share is >= 0.5 for which that label
  is the majority label (target: >= 80%);
* **nearest / typical**: L2 distance from the view to its nearest training digit over the median
  nearest-training distance of 2,000 test digits; **plausibility**: cos in ``fc1`` to the top-16
  minus cos to 16 random digits;
* **s (32 ch)**: wall seconds of the batched optimization of the 32 channels (2 threads).

Views (all seed 0; "peak" is each channel's modal argmax position over its top-16 examples,
:func:`interp.optvis.neuron.peak_positions`). The first two rows are what the library renders with
the settings of configs/model/cnn.yaml (read from that file), through
:func:`interp.steps.featvis.feature_visualization` with the top-16 of the 60,000 training digits:

* ``plain (model=cnn)``: ``kind=peak`` (Lucid's neuron objective at the peak),
  ``plain_param=dark`` (:func:`~interp.optvis.neuron.dark_image`: Fourier 1/f^1.5, dark start),
  L1 weight 5 x each channel's own 16th-best activation (``l1_relative``), 256 steps at lr 0.01, no
  transforms;
* ``prototype (model=cnn)``: the ``prototype`` view: each channel's top-16 shifted so that their
  peaks land on the modal peak (2 px per conv2 grid step), averaged, and accentuated
  (:func:`~interp.optvis.neuron.accentuate_prototypes`: 128 Adam steps at lr 0.02 on a Fourier
  1/f^1.5 offset, ``reg_weight`` 30 at the model's first layer) with the neuron objective at the
  peak;
* ``plain, L1 5 x median 16th``: the plain setting as researched (one L1 weight for all channels:
  5 x the median of their 16th best), for comparison with the per-channel weight;
* ``plain (before)``, ``prior``, ``MaCo``, ``accentuation (top-1 digit)``: the views of
  benchmarks/legibility.py (``lucid``: default Fourier 1/f parameterization, channel mean, default
  transforms, 256 steps at lr 0.05, the ``model=cnn`` plain view until now; the prior from the mean
  code of the top-16 within radius 2; accentuation of each channel's best digit, channel mean);
* ``neuron at peak``: Lucid's ``neuron`` objective at the peak with the default parameterization
  and transforms (256 steps, lr 0.05);
* ``aligned mean (no optimization)``: the prototype before its accentuation.

Reproduce from the repository root (``INTERP_DATA_DIR`` pointing at MNIST)::

    .venv/bin/python -m interp train model=cnn 'callbacks=[]' runs_dir=<scratch>/runs   # ~2 min, outside the repository
    .venv/bin/python -m benchmarks.conv_legibility --cnn-ckpt <scratch>/runs/mnist_cnn/<run>/checkpoints/last.ckpt

Without ``--cnn-ckpt`` it trains the model first (as benchmarks/legibility.py does, into
``runs/legibility_cnn``). The grid of channels 0-31 goes to ``--png`` (default
docs/conv2_views.png); the table replaces the section "Convolutional legibility" of
benchmarks/RESULTS.md (``--no-write``: only print it). About 3 minutes on 2 cores after training.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from benchmarks import legibility as leg
from benchmarks.common import REPO, data_root, log, machine_header, table, write_section
from interp.data import MNISTDataModule
from interp.models.prior import train_prior
from interp.optvis import objectives as obj
from interp.optvis import param, render
from interp.optvis.maco import magnitude_from_data
from interp.optvis.neuron import aligned_mean, dark_image, neuron, peak_positions
from interp.optvis.param import unit_seeds
from interp.optvis.receptive import receptive_field
from interp.report import Reporter
from interp.steps.featvis import FeatVisSettings, ViewInputs, feature_visualization
from interp.steps.topk import Examples

THREADS = 2
SEED = 0
K = leg.K
TARGET_KTH, TARGET_AGREE = 0.90, 0.80
PNG = REPO / "docs" / "conv2_views.png"
HEADING = "## Convolutional legibility (benchmarks/conv_legibility.py)"
SPEC = leg.CNN_CONV2
# columns of the PNG (view names; the first two columns are the top-1 digit and the prototype)
SHOWN = (
    "plain (before)",
    "plain (model=cnn)",
    "prior",
    "MaCo",
    "accentuation (top-1 digit)",
    "neuron at peak",
    "prototype (model=cnn)",
)


def cnn_settings() -> dict:
    """The feature visualization settings of configs/model/cnn.yaml, as ``feature_visualization``
    keyword arguments, and the views it names."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "configs" / "model" / "cnn.yaml")
    return dict(
        kind=cfg.featvis_kind,
        plain_param=cfg.plain_param,
        lr=float(cfg.featvis_lr),
        transforms=cfg.featvis_transforms if cfg.featvis_transforms is not None else None,
        tv_weight=float(cfg.tv_weight),
        l1_weight=float(cfg.l1_weight),
        l1_relative=bool(cfg.l1_relative),
        views=list(cfg.views),
    )


def compute(ctx: leg.Context, dm, prior, magnitude) -> dict[str, leg.ViewResult]:
    model, layer, units = ctx.model, SPEC.layer, SPEC.units
    u, shape = len(units), (1, 28, 28)
    pos = peak_positions(ctx.top.positions)
    kth = ctx.top.values[:, K - 1].float()
    examples = ctx.train_images[ctx.top.indices]  # [U, 16, 1, 28, 28] uint8
    at_peak = neuron(layer, units, pos)
    out: dict[str, leg.ViewResult] = {}

    def timed(name: str, fn: Callable[[], torch.Tensor]) -> None:
        log(f"view {name}")
        start = time.perf_counter()
        images = fn()
        out[name] = leg.ViewResult(images.detach().cpu().clamp(0, 1), time.perf_counter() - start)
        log(f"  {out[name].seconds:.1f} s")

    settings = cnn_settings()
    views = settings.pop("views")
    log(f"configs/model/cnn.yaml: views {views}, {settings}")
    data = TensorDataset(ctx.train_images.float() / 255)
    mined = Examples(ctx.top, None, data)

    def library(view: str) -> torch.Tensor:
        off = Reporter(REPO, enabled=False)
        chosen = FeatVisSettings(views=(view,), seed=SEED, **settings)
        return (
            feature_visualization(model, off, layer, units, chosen, ViewInputs(examples=mined)).renderings[view].image
        )

    timed("plain (model=cnn)", lambda: library("plain"))
    timed("prototype (model=cnn)", lambda: library("prototype"))
    ink = 5.0 * float(kth.median())
    seeds = unit_seeds(SEED, units)
    timed(
        "plain, L1 5 x median 16th",
        lambda: (
            render(
                model,
                at_peak - ink * obj.l1(),
                param=dark_image((u, *shape), seed=seeds),
                transforms=None,
                steps=256,
                lr=0.01,
                seed=SEED,
            ).image
        ),
    )
    current = leg.compute_views(ctx, dm, magnitude, prior, ["lucid", "maco", "prior", "accentuation"])
    for old, new in [
        ("lucid", "plain (before)"),
        ("prior", "prior"),
        ("maco", "MaCo"),
        ("accentuation", "accentuation (top-1 digit)"),
    ]:
        out[new] = current[old]
    timed(
        "neuron at peak",
        lambda: render(model, at_peak, param=param.image((u, *shape), seed=seeds), steps=256, lr=0.05, seed=SEED).image,
    )
    stride = receptive_field(model, layer, shape).stride
    timed("aligned mean (no optimization)", lambda: aligned_mean(examples, ctx.top.positions, stride))
    return out


def verdict(m: dict[str, float]) -> str:
    kth_ok, agree_ok = m["above_kth"] >= TARGET_KTH, m["agree"] >= TARGET_AGREE
    if kth_ok and agree_ok:
        return "**met**"
    missing = [s for s, ok in [(">= 16th", kth_ok), ("agreement", agree_ok)] if not ok]
    return "not met (" + ", ".join(missing) + ")"


def report(ctx: leg.Context, results: dict[str, leg.ViewResult]) -> str:
    rows = []
    for name, r in results.items():
        m = r.metrics
        ref = name == leg.REFERENCE
        rows.append(
            [
                name if ref else f"`{name}`",
                leg.fmt(m["ratio_median"]),
                leg.fmt(m["above_kth"], True),
                f"{leg.fmt(m['agree'], True)} (of {m['eligible']})",
                leg.fmt(m["nn_median"]),
                f"{m['plaus_mean']:+.2f}",
                "-" if ref else f"{r.seconds:.1f}",
                "-" if ref else verdict(m),
            ]
        )
    header = [
        "view",
        "act / dataset max (median, spatial max)",
        f">= 16th best (target >= {TARGET_KTH:.0%})",
        f"observer agreement (target >= {TARGET_AGREE:.0%})",
        "nearest / typical",
        "plausibility",
        "s (32 ch)",
        "verdict",
    ]
    return table(header, rows)


def save_grid(ctx: leg.Context, results: dict[str, leg.ViewResult], path: Path) -> None:
    """Channels 0-31 in two blocks of 16 rows; columns: top-1 digit, aligned mean, then SHOWN."""
    from PIL import Image, ImageDraw

    scale, pad, title_h, label_w = 3, 3, 28, 24
    cell = 28 * scale
    cols = [("top-1 train", ctx.train_images[ctx.top.indices[:, 0]].float() / 255)]
    cols.append(("aligned mean", results["aligned mean (no optimization)"].images))
    cols += [(name, results[name].images) for name in SHOWN if name in results]
    titles = {
        "plain (before)": "plain before",
        "plain (model=cnn)": "plain now",
        "accentuation (top-1 digit)": "accent. top-1",
        "neuron at peak": "neuron@peak",
        "prototype (model=cnn)": "prototype",
    }
    block_w = label_w + len(cols) * (cell + pad)
    width, height = 2 * block_w + 12, title_h + 16 * (cell + pad)
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    for block in range(2):
        bx = block * (block_w + 12)
        for c, (name, imgs) in enumerate(cols):
            x0 = bx + label_w + c * (cell + pad)
            draw.text((x0, 4 + 10 * (c % 2)), titles.get(name, name)[:14], fill=0)
            for r in range(16):
                unit = block * 16 + r
                y0 = title_h + r * (cell + pad)
                arr = (imgs[unit, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                tile = Image.fromarray(arr, mode="L").resize((cell, cell), Image.Resampling.NEAREST)
                canvas.paste(tile, (x0, y0))
                if c == 0:
                    draw.text((bx + 2, y0 + cell // 2 - 5), str(unit), fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    log(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn-ckpt", default=None, help="a `model=cnn` checkpoint (default: train one first)")
    parser.add_argument("--observer-epochs", type=int, default=2)
    parser.add_argument("--png", type=Path, default=PNG, help=f"the grid (default {PNG.relative_to(REPO)})")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    wall = time.perf_counter()

    dm = MNISTDataModule(root=str(data_root()), download=False)
    dm.setup()
    train_images, train_labels = dm.full_train_set.images, dm.full_train_set.labels
    test_images, test_labels = dm.test_set.images, dm.test_set.labels
    prior = train_prior(dm)
    magnitude = magnitude_from_data(dm.train_set.images, (28, 28))
    if args.cnn_ckpt is None:
        ckpt, _ = leg.train_subprocess(SPEC)
    else:
        ckpt = Path(args.cnn_ckpt)
    model = leg.load_model(SPEC, ckpt)
    acc = leg.test_accuracy(model, test_images, test_labels)
    observer, obs_acc, _ = leg.train_observer(
        "mlp", dm.train_set.images, dm.train_set.labels, test_images, test_labels, args.observer_epochs
    )
    log(f"CNN test accuracy {acc:.4f}; observer (MLP) test accuracy {obs_acc:.4f}")
    ctx = leg.build_context(model, SPEC, train_images, train_labels, test_images, observer)
    results = compute(ctx, dm, prior, magnitude)
    results[leg.REFERENCE] = leg.reference_view(ctx, test_images)
    for r in results.values():
        r.metrics, r.detail = leg.measure(ctx, r.images)
    eligible = int((ctx.majority_share >= 0.5).sum())
    shown_args = " ".join("<ckpt>" if a == args.cnn_ckpt else a for a in sys.argv[1:])
    shown = ckpt.relative_to(REPO) if ckpt.is_relative_to(REPO) else ckpt.name
    text = "\n".join(
        [
            HEADING,
            "",
            f"{machine_header(THREADS)} The machine was shared (other jobs ran beside this one): the seconds are "
            f"indicative. Reproduce: `.venv/bin/python -m benchmarks.conv_legibility {shown_args}` "
            f"(`<ckpt>`: a default `python -m interp train model=cnn` run's `checkpoints/last.ckpt`, trained "
            f"outside the repository). CNN `{shown}`, test accuracy {100 * acc:.2f}%; observer MLP "
            f"{100 * obs_acc:.2f}%; {eligible} of 32 channels have a top-16 majority share >= 0.5. "
            f"Whole run {(time.perf_counter() - wall) / 60:.1f} min.",
            "",
            "`conv2` channels 0-31 of the MNIST CNN. Columns: *act / dataset max*: the channel's spatial max on the "
            "view over its largest spatial max on the 60,000 training digits (the statistic the top-k ranks by, "
            "and the one captions, `featvis.pt` and ratios report), median; *>= 16th best*: share of channels "
            "whose view reaches their 16th-best training digit; *observer agreement*: an MLP trained here labels "
            "the view, share of the eligible channels for which it says their top-16 majority label; *nearest / "
            "typical*: L2 distance to the nearest training digit over the typical test-to-train distance; "
            "*plausibility*: cos in `fc1` to the top-16 minus cos to 16 random digits; *s (32 ch)*: wall seconds "
            "of one batched run of the 32 channels. Views as in the module docstring; the first two rows are the "
            "`model=cnn` default views (`views: [plain, prototype]`, configs/model/cnn.yaml) rendered by "
            "`feature_visualization`. Verdict: both targets (>= 16th best >= 90%, agreement >= 80%).",
            "",
            report(ctx, results),
            "",
            f"Channels 0-31, every view: [{args.png.name}](../docs/{args.png.name}).",
            "",
        ]
    )
    print(text, flush=True)
    save_grid(ctx, results, args.png)
    if not args.no_write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
