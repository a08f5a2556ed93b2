"""Which explanation to trust: the explanation scores of every attribution method on four layers, and their cost.

For ``dense_1`` (hidden units) and ``dense_3`` (the 10 output classes) of the default MNIST MLP, and ``conv2``
(channels) and ``fc2`` (the classes) of the MNIST CNN (``model=cnn``), both trained as ``make train`` trains them
(``python -m interp train 'callbacks=[]'``, the helper of ``benchmarks/legibility.py``), each unit's top
``--inputs`` training digits (of the first 10,000) are explained by every method that applies (``ig`` with 32 steps
as configured, ``saliency``, ``deeplift``, ``occlusion``, ``lrp``, and ``gradcam`` on ``conv2``) and scored with
:func:`interp.steps.attribution.score_unit` at its default :class:`~interp.steps.attribution.ScoreSettings`,
exactly what ``AttributionCheck`` logs:

* **deletion AUC** (lower is better) and **insertion AUC** (higher is better): 16 steps, black baseline;
* **faithfulness** correlation (higher is better), **relative max-sensitivity** (lower is better), **Gini**
  sparseness (higher: more concentrated);
* the sanity checks beside: **cascading randomization** (the score: Spearman of the map's magnitudes with the maps
  of a model whose layers up to the unit are re-initialized one by one from the top, averaged over the steps) and
  **all-at-once randomization** (``AttributionCheck``'s ``randomization_spearman_*``: every layer re-initialized at
  once, :func:`~interp.optvis.attribution.randomized_copy`); low means the map depends on the weights;
* **best del. / best ins.**: the share of units for which the method has the lowest deletion / highest insertion AUC
  of all methods (tied methods all count);
* **s/unit off / on**: wall seconds per unit of the method's maps alone (scores off), and of the maps plus their
  scores (on; the method scored alone, so the methods' shared deletion, insertion and faithfulness calls of
  ``AttributionCheck`` are not pooled here).

The numbers are medians over units of each unit's mean over its inputs (``nan`` left out; ``–``: no unit had a
finite value, e.g. a constant map has no correlation). Then the cost where it matters: ``attribute_units`` on the
default run's setting (``dense_1`` units 0-63, ``configs/callbacks/attribution.yaml``: k 8, ig and saliency, 32 IG
steps, sanity check and scores on the first 16 units), with the scores off and on, alternating, ``--reps`` times.

Run from the repository root::

    .venv/bin/python -m benchmarks.explanation_scores                  # trains both models (~2 min), ~6 min
    .venv/bin/python -m benchmarks.explanation_scores --ckpt --cnn-ckpt  # newest checkpoints of earlier runs
    .venv/bin/python -m benchmarks.explanation_scores --no-write
"""

from __future__ import annotations

import os

# Shared, oversubscribed CPUs: passive OpenMP waiting (set before torch loads OpenMP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from benchmarks.common import REPO, data_root, log, machine_header, table, write_section
from benchmarks.legibility import LayerSpec, ckpt_arg, load_model, test_accuracy, train_subprocess
from interp.data import MNISTDataModule
from interp.models import MnistMLP
from interp.models.cnn import MnistCNN
from interp.optvis import scores as sc
from interp.optvis.attribution import neuron_attributions, randomized_copy, spearman
from interp.report import Reporter, topk_images
from interp.steps.attribution import (
    SCORES,
    TITLES,
    AttributionSettings,
    ScoreSettings,
    attribute_units,
    score_unit,
)
from interp.steps.topk import Examples, mine

SECTION = "## Which explanation to trust (benchmarks/explanation_scores.py)"
THREADS = 2
IG_STEPS = 32  # configs/callbacks/attribution.yaml
MINE_FROM = 10_000  # the top examples come from the first 10,000 training digits
NOTE = (
    "Reading the sanity checks: integrated gradients, DeepLift and occlusion multiply by the input or black it out, "
    "so on MNIST the background is exactly 0 in their maps whatever the weights; the ranks of the magnitudes then "
    'stay alike after any randomization (a known blind spot of the check, Binder et al. 2023, "Shortcomings of '
    "top-down randomization-based sanity checks\"), while the gradient and Grad-CAM change with the weights. LRP's "
    "flat rule at a fully connected first layer spreads relevance evenly over the pixels, so every LRP map of the "
    "MLP is constant (Gini 0, no correlation: `–`); on the CNN the flat rule only spreads it over each 5x5 "
    "receptive field of `conv1`. The deletion and insertion AUCs are in the unit's own values, comparable between "
    "the methods of a layer, not between layers."
)
SHORT = {
    "deletion_auc": "deletion AUC ↓",
    "insertion_auc": "insertion AUC ↑",
    "faithfulness": "faithfulness ↑",
    "max_sensitivity": "max-sens. ↓",
    "sparseness": "Gini ↑",
    "randomization": "cascading rand. ↓",
}


@dataclass
class Layer:
    label: str
    model: nn.Module
    layer: str
    units: list[int]
    methods: list[str]


@dataclass
class MethodResult:
    scores: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in SCORES})
    at_once: list[float] = field(default_factory=list)
    map_seconds: list[float] = field(default_factory=list)
    score_seconds: list[float] = field(default_factory=list)


def median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


def fmt(v: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(v) else f"{v:.{digits}g}"


def options(method: str) -> dict:
    return {"n_steps": IG_STEPS, "internal_batch_size": 256} if method == "ig" else {}


def score_layer(spec: Layer, images: torch.Tensor, k: int, settings: ScoreSettings) -> dict[str, MethodResult]:
    """Every method's maps and scores of every unit of ``spec`` (each on its top-k of ``images``)."""
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    top = mine(spec.model, spec.layer, spec.units, k, dataset, 1024)
    cascade = sc.randomizable_layers(spec.model, spec.layer, images[:1])
    randomized = randomized_copy(spec.model)
    results = {m: MethodResult() for m in spec.methods}
    for row, unit in enumerate(spec.units):
        x = topk_images(top, dataset, row)[:k]
        for method in spec.methods:
            r = results[method]
            start = time.perf_counter()
            maps = neuron_attributions(spec.model, spec.layer, unit, x, method=method, **options(method)).maps
            r.map_seconds.append(time.perf_counter() - start)
            start = time.perf_counter()
            s = score_unit(
                spec.model, spec.layer, unit, x, {method: maps}, settings, {method: options(method)}, cascade
            )
            r.score_seconds.append(time.perf_counter() - start)
            for metric, values in s.items():
                r.scores[metric].append(values[0])
            random_maps = neuron_attributions(randomized, spec.layer, unit, x, method=method, **options(method)).maps
            pixels = maps.sum(1) if maps.dim() == 4 else maps
            random_pixels = random_maps.sum(1) if random_maps.dim() == 4 else random_maps
            r.at_once.append(statistics.mean(spearman(a.abs(), b.abs()) for a, b in zip(pixels, random_pixels)))
        log(f"  {spec.label}: unit {unit} done")
    return results


def leaders(values: dict[str, float], lower: bool) -> list[str]:
    """The methods whose finite value is the best of ``values`` (ties within a relative 1e-6 all lead)."""
    finite = {m: v for m, v in values.items() if math.isfinite(v)}
    if not finite:
        return []
    best = (min if lower else max)(finite.values())
    return [m for m, v in finite.items() if abs(v - best) <= 1e-6 * max(abs(best), 1e-12)]


def best_shares(results: dict[str, MethodResult], metric: str, lower: bool) -> dict[str, float]:
    """For each method, the share of units where it has the best value of ``metric`` among the methods (tied
    methods all count, so the shares may add up to more than 100%)."""
    methods = list(results)
    n = len(results[methods[0]].scores[metric])
    wins = dict.fromkeys(methods, 0)
    for i in range(n):
        for m in leaders({m: results[m].scores[metric][i] for m in methods}, lower):
            wins[m] += 1
    return {m: wins[m] / n for m in methods}


def layer_rows(spec: Layer, results: dict[str, MethodResult]) -> list[list[str]]:
    best_del = best_shares(results, "deletion_auc", lower=True)
    best_ins = best_shares(results, "insertion_auc", lower=False)
    med = {m: {metric: median(r.scores[metric]) for metric in SCORES} for m, r in results.items()}
    top_del = leaders({m: v["deletion_auc"] for m, v in med.items()}, lower=True)
    top_ins = leaders({m: v["insertion_auc"] for m, v in med.items()}, lower=False)
    rows = []
    for method, r in results.items():
        cells = []
        for metric in SCORES:
            text = fmt(med[method][metric])
            bold = (metric == "deletion_auc" and method in top_del) or (metric == "insertion_auc" and method in top_ins)
            cells.append(f"**{text}**" if bold else text)
        rows.append(
            [
                f"{spec.label} `{spec.layer}`",
                TITLES.get(method, method),
                *cells,
                fmt(median(r.at_once)),
                f"{100 * best_del[method]:.0f}%",
                f"{100 * best_ins[method]:.0f}%",
                f"{statistics.mean(r.map_seconds):.3f}",
                f"{statistics.mean(r.map_seconds) + statistics.mean(r.score_seconds):.3f}",
            ]
        )
    return rows


def verdict(spec: Layer, results: dict[str, MethodResult]) -> str:
    med = {m: {metric: median(r.scores[metric]) for metric in SCORES} for m, r in results.items()}

    def best(metric: str, lower: bool) -> str:
        return " and ".join(f"`{m}`" for m in leaders({m: v[metric] for m, v in med.items()}, lower)) or "none"

    d, i = best("deletion_auc", True), best("insertion_auc", False)
    sane = sorted((m for m in med if math.isfinite(med[m]["randomization"])), key=lambda m: med[m]["randomization"])
    insane = [m for m in med if math.isfinite(med[m]["randomization"]) and med[m]["randomization"] > 0.5]
    flat = [m for m in med if med[m]["sparseness"] == 0]
    text = f"**{spec.label} `{spec.layer}`**: deletion favours {d}, insertion {i}"
    if sane:
        text += f"; the map that changes most when the weights do (cascading): `{sane[0]}`"
    if insane:
        text += f"; fails the randomization check (Spearman > 0.5): {', '.join(f'`{m}`' for m in insane)}"
    if flat:
        text += f"; constant maps (Gini 0): {', '.join(f'`{m}`' for m in flat)}"
    return text + "."


def step_cost(model: nn.Module, dataset, reps: int) -> tuple[list[float], list[float]]:
    """Wall seconds of ``attribute_units`` on the default run's setting, scores off and on, alternating; the
    examples mined once beforehand (``make train`` reuses the top-k callback's)."""
    units = list(range(64))
    examples = Examples(mine(model, "dense_1", units, 8, dataset, 1024), None, dataset)
    off, on = [], []
    for _ in range(reps):
        for scores, out in ((False, off), (True, on)):
            with tempfile.TemporaryDirectory() as tmp:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(tmp)
                start = time.perf_counter()
                settings = AttributionSettings(k=8, ig_steps=IG_STEPS, on_mismatch="raise", scores=scores)
                attribute_units(
                    model, dataset, Reporter(tmp, writer), "dense_1", settings, units=units, examples=examples
                )
                writer.flush()
                out.append(time.perf_counter() - start)
                writer.close()
            log(f"  attribute_units, scores {'on' if scores else 'off'}: {out[-1]:.2f} s")
    return off, on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, what in (("--ckpt", "runs/mnist_mlp"), ("--cnn-ckpt", "runs/legibility_cnn")):
        parser.add_argument(
            flag,
            nargs="?",
            const="newest",
            default=None,
            help=f"use this checkpoint instead of training (no value: the newest {what}/*/checkpoints/last.ckpt)",
        )
    parser.add_argument("--units", type=int, default=16, help="hidden units / channels per layer (classes: all 10)")
    parser.add_argument("--inputs", type=int, default=8, help="top examples explained per unit")
    parser.add_argument("--reps", type=int, default=2, help="repetitions of the attribute_units timing")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    wall_start = time.perf_counter()

    specs = [
        LayerSpec("MLP", MnistMLP, [], "legibility", "dense_1", [], "", "runs/mnist_mlp/*/checkpoints/last.ckpt"),
        LayerSpec(
            "CNN",
            MnistCNN,
            ["model=cnn"],
            "legibility_cnn",
            "conv2",
            [],
            "",
            "runs/legibility_cnn/*/checkpoints/last.ckpt",
        ),
    ]
    dm = MNISTDataModule(root=str(data_root()), download=False)
    dm.setup()
    images = dm.full_train_set.images[:MINE_FROM]
    models, setup = {}, []
    for spec in specs:
        given = ckpt_arg(args.ckpt if spec.model_cls is MnistMLP else args.cnn_ckpt, spec)
        if given is None:
            ckpt, seconds = train_subprocess(spec)
            how = f"trained here, `python -m interp train 'callbacks=[]'{''.join(' ' + o for o in spec.overrides)}`"
            how += f" ({seconds:.0f} s)"
        else:
            ckpt, how = given, "loaded"
        model = load_model(spec, ckpt)
        acc = test_accuracy(model, dm.test_set.images, dm.test_set.labels)
        shown = ckpt.relative_to(REPO) if ckpt.is_relative_to(REPO) else ckpt
        setup.append(f"* {spec.name}: `{shown}` ({how}); test accuracy {100 * acc:.2f}%.")
        log(setup[-1])
        models[spec.name] = model

    hidden = list(range(args.units))
    classes = list(range(10))
    common = ["ig", "saliency", "deeplift", "occlusion", "lrp"]
    layers = [
        Layer("MLP", models["MLP"], "dense_1", hidden, common),
        Layer("MLP", models["MLP"], "dense_3", classes, common),
        Layer("CNN", models["CNN"], "conv2", hidden, [*common, "gradcam"]),
        Layer("CNN", models["CNN"], "fc2", classes, common),
    ]
    settings = ScoreSettings()
    rows, verdicts = [], []
    for spec in layers:
        log(f"scoring {spec.label} {spec.layer} ({len(spec.units)} units, {', '.join(spec.methods)})")
        results = score_layer(spec, images, args.inputs, settings)
        rows += layer_rows(spec, results)
        verdicts.append(verdict(spec, results))

    log("attribute_units on the default run's setting (MLP dense_1 units 0-63)")
    off, on = step_cost(models["MLP"], dm.train_set, args.reps)
    total = time.perf_counter() - wall_start

    header = [
        "layer",
        "method",
        *(SHORT[m] for m in SCORES),
        "all-at-once rand. ↓",
        "best del.",
        "best ins.",
        "s/unit off",
        "s/unit on",
    ]
    cost = table(
        ["AttributionCheck on dense_1 units 0-63", "scores off", "scores on", "added"],
        [
            [
                "seconds (median of " + str(args.reps) + ")",
                f"{statistics.median(off):.2f}",
                f"{statistics.median(on):.2f}",
                f"+{statistics.median(on) - statistics.median(off):.2f}",
            ],
            ["runs", ", ".join(f"{v:.2f}" for v in off), ", ".join(f"{v:.2f}" for v in on), ""],
        ],
    )
    parts = [
        SECTION,
        "",
        f"{machine_header(THREADS)} 2-core shared machine (other jobs ran beside it). Reproduce: "
        f"`{' '.join(['.venv/bin/python -m benchmarks.explanation_scores', *sys.argv[1:]])}` (MNIST from "
        f"`$INTERP_DATA_DIR`); the whole run took {total / 60:.1f} min.",
        "",
        f"Each unit's top {args.inputs} of the first {MINE_FROM:,} training digits explained by each method and "
        f"scored as `AttributionCheck` scores them (`ScoreSettings()`: {settings.steps} deletion/insertion steps, "
        f"{settings.runs} faithfulness subsets of a tenth of the pixels, {settings.noise_samples} noise draws of "
        f"radius {settings.radius}, seed {settings.seed}); {args.units} hidden units or channels per layer, the 10 "
        "classes of the output layers. Medians over units; ↓ lower is better, ↑ higher is better; the best "
        "deletion and insertion median of each layer in bold. Definitions in the module docstring.",
        "",
        *setup,
        "",
        table(header, rows, "ll" + "r" * (len(header) - 2)),
        "",
        *(f"- {v}" for v in verdicts),
        "",
        NOTE,
        "",
        cost,
        "",
        "The default `make train` scores the first 16 units of `dense_1` with ig and saliency: the row *added* is "
        "what the scores cost it.",
        "",
    ]
    text = "\n".join(parts)
    print(text, flush=True)
    if args.no_write:
        log("--no-write: RESULTS.md left alone")
        return
    write_section(SECTION, text)


if __name__ == "__main__":
    main()
