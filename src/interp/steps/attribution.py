"""Attribution of each unit's top examples, cross-checked against Captum, sanity-checked by model randomization
(Adebayo et al. 2018) and scored (:mod:`interp.optvis.scores`).

Scores of each method's maps, on the first ``score_units`` units (each on its top examples, the maps that are
drawn), with the settings of :class:`ScoreSettings` (seeded: the same numbers every run):

* ``deletion_auc``: the area under the unit's value as the most relevant pixels are set to 0 first (lower is
  better);
* ``insertion_auc``: the same as they are put back into a black image (higher is better);
* ``faithfulness``: the Pearson correlation of the map's sum over random pixel subsets with the drop of the unit
  when they are set to 0 (higher is better);
* ``max_sensitivity``: the largest change of the map under small uniform input noise, relative to its norm
  (lower is better);
* ``sparseness``: the Gini index of the map's magnitudes (higher: more concentrated);
* ``randomization``: cascading model-parameter randomization, the Spearman correlation of the map's magnitudes
  with the map of a model whose layers up to the unit are re-initialized one by one from the top, averaged over the
  steps (lower is better: the map depends on the weights).

Each is the mean over the unit's inputs. Maps of images with several channels are summed over channels first, as
they are drawn (a feature is a pixel). ``<run>/interp/attribution/<layer>/attribution.pt`` holds::

    units          [U]                 the units, in the order of every per-unit row below
    examples       [U, k, C, H, W]     each unit's top examples
    <method>       [U, k, H, W]        each method's maps (summed over channels)
    score_methods  list[str]           the methods scored, in the order of the rows of the score tensors
    scores         {metric: [M, U]}    float64 per method (row) and unit (column); nan for the units not scored

(``score_methods`` and ``scores`` only when the scores were computed.)
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.errors import InterpError
from interp.optvis import scores as sc
from interp.optvis.attribution import (
    METHODS,
    agreement,
    neuron_attributions,
    randomization_check,
    randomization_seed,
    randomized_copy,
)
from interp.records import AttributionRecord, save_record
from interp.report import Reporter, colour_legend, grid, heatmap_overlay, titled_column, titled_row, topk_images
from interp.settings import Settings, SettingsError
from interp.steps.common import Units, example_input, gather_shares, my_share, resolve_units, unit_tag
from interp.steps.topk import Examples, TopKSettings, mine_examples

log = logging.getLogger(__name__)


class AttributionMismatchError(InterpError, RuntimeError):
    """Our activations or gradients differ from Captum's by more than the tolerance."""


@dataclass
class AttributionSummary:
    """What :func:`attribute_units` returns.

    Attributes:
        activation_maxdiff: largest difference between our captured activations and Captum's.
        grad_maxdiff: largest difference between our unit input gradients and Captum's.
        checked_units: the units whose gradients were cross-checked.
        means: per-metric means over the units (IG completeness error, randomization correlations).
        scores: ``{metric: {method: median over the units scored}}`` (see :data:`SCORES`).
    """

    activation_maxdiff: float
    grad_maxdiff: float
    checked_units: list[int]
    means: dict[str, float] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{metric: {method: median over the units scored}}`` (see :data:`SCORES`)."""


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


SHORT = {"saliency": "grad"}
TITLES = {
    "ig": "integrated gradients",
    "saliency": "gradient (saliency)",
    "deeplift": "DeepLift",
    "occlusion": "occlusion",
    "gradcam": "Grad-CAM",
    # The picture's font has no ε or ♭ (EpsilonPlusFlat: ε for dense layers, z+ for convs, flat for the first).
    "lrp": "LRP (epsilon-plus-flat, Zennit)",
}

#: the scores of the maps: ``metric -> (what it is called, whether higher is better)``
SCORES: dict[str, tuple[str, bool]] = {
    "deletion_auc": ("deletion AUC", False),
    "insertion_auc": ("insertion AUC", True),
    "faithfulness": ("faithfulness correlation", True),
    "max_sensitivity": ("relative max-sensitivity", False),
    "sparseness": ("Gini sparseness", True),
    "randomization": ("cascading randomization Spearman", False),
}


def score_header(metric: str) -> str:
    """The name of a metric of :data:`SCORES` with its direction, e.g. ``deletion AUC (lower is better)``.

    Args:
        metric: a key of :data:`SCORES`.

    Returns:
        The header.
    """
    name, higher = SCORES[metric]
    return f"{name} ({'higher' if higher else 'lower'} is better)"


@dataclass(frozen=True)
class ScoreSettings(Settings):
    """How the maps are scored. Their cost: the defaults add 0.9-2.7 s to the attribution step of ``make train``
    (16 units of ``dense_1``, ig and saliency; ``benchmarks/explanation_scores.py``).

    Attributes:
        inputs: the first ``inputs`` top examples of each unit are scored (None: all ``k``).
        steps: deletion and insertion replace ``ceil(features / steps)`` features per step.
        runs: random feature subsets of the faithfulness correlation, each a tenth of the features.
        noise_samples: noise draws of the max-sensitivity, uniform in ``[-radius, radius]``.
        radius: the max-sensitivity's noise bound.
        seed: the seed of the subsets, the noise and the re-initializations.
    """

    inputs: int | None = None
    steps: int = 16
    runs: int = 16
    noise_samples: int = 3
    radius: float = 0.02
    seed: int = 0

    def check(self) -> None:
        """Refuse counts below their least value and a negative or infinite ``radius``.

        Raises:
            SettingsError: a value that cannot work.
        """
        self.at_least("inputs", 1, optional=True)
        self.at_least("steps", 1)
        self.at_least("runs", 2)
        self.at_least("noise_samples", 1)
        self.finite("radius", 0.0)

    @classmethod
    def of(cls, value: bool | ScoreSettings | Mapping | None) -> ScoreSettings | None:
        """Settings from what a config holds.

        Args:
            value: ``True`` (the defaults), ``False`` or ``None`` (no scores), a mapping of settings, or settings.

        Returns:
            The settings, or ``None`` for no scores.

        Raises:
            SettingsError: an unknown setting, a setting out of range, or a value of another type.
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, (ScoreSettings, Mapping)):
            return cls.build(value)
        raise SettingsError(f"ScoreSettings: give true, false or a mapping of score settings, got {value!r}")


@dataclass(frozen=True)
class AttributionSettings(Settings):
    """What decides :func:`attribute_units`: the Captum cross-check, the maps, their sanity check and their scores.

    Attributes:
        k: top examples attributed per unit.
        n_check: inputs of the Captum cross-check.
        check_units: units whose input gradients are cross-checked (the first ones; None: all; each costs one
            backward pass per check input).
        ig_steps: integration steps of integrated gradients.
        internal_batch_size: inputs per forward pass of integrated gradients.
        tolerance: the largest accepted difference from Captum.
        on_mismatch: a difference above ``tolerance`` ``"raise"``-s :class:`AttributionMismatchError` or
            ``"warn"``-s.
        sanity_check: run the model-randomization check (Adebayo et al. 2018).
        sanity_units: units of the randomization check (the first ones; None: all).
        batch_size: batch size of the top-k mining.
        methods: the attribution methods (:data:`~interp.optvis.attribution.METHODS`: ``ig``, ``saliency``,
            ``deeplift``, ``occlusion``, ``gradcam`` for conv layers, ``lrp``).
        scores: how the maps are scored (:class:`ScoreSettings`; None: not scored). Given as True (the defaults),
            False (none) or a mapping of score settings, e.g. ``{noise_samples: 5}``.
        score_units: units scored (the first ones; None: all).
    """

    k: int = 8
    n_check: int = 64
    check_units: int | None = 8
    ig_steps: int = 32
    internal_batch_size: int = 256
    tolerance: float = 1e-5
    on_mismatch: str = "warn"
    sanity_check: bool = True
    sanity_units: int | None = 16
    batch_size: int = 1024
    methods: tuple[str, ...] = ("ig", "saliency")
    scores: ScoreSettings | None = ScoreSettings()
    score_units: int | None = 16

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "scores", ScoreSettings.of(self.scores))
        except SettingsError as e:
            self.fail(f"scores: {str(e).removeprefix('ScoreSettings: ')}")
        super().__post_init__()

    def check(self) -> None:
        """Refuse counts below their least value, an unknown method and an unknown ``on_mismatch``.

        Raises:
            SettingsError: a value that cannot work.
        """
        self.at_least("k", 1)
        self.at_least("n_check", 1)
        self.at_least("check_units", 0, optional=True)
        self.at_least("ig_steps", 1)
        self.at_least("internal_batch_size", 1)
        self.finite("tolerance", 0.0)
        self.one_of("on_mismatch", ("raise", "warn"))
        self.at_least("sanity_units", 0, optional=True)
        self.at_least("batch_size", 1)
        self.at_least("score_units", 0, optional=True)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            self.fail(f"unknown attribution method {unknown[0]!r}: use {', '.join(METHODS)}")
        if not self.methods:
            self.fail(f"no attribution method: give one or more of {', '.join(METHODS)}")


def _pixels(maps: torch.Tensor) -> torch.Tensor:
    """Maps of images ``[N, C, H, W]`` summed over channels (``[N, 1, H, W]``, as drawn); others as they are."""
    return maps.sum(1, keepdim=True) if maps.dim() == 4 else maps


def score_unit(
    model: nn.Module,
    layer: str,
    unit: int,
    inputs: torch.Tensor,
    maps: dict[str, torch.Tensor],
    settings: ScoreSettings,
    options: Mapping[str, Mapping] | None = None,
    layers: Sequence[str] | None = None,
) -> dict[str, list[float]]:
    """The scores of each method's maps of one unit, each the mean over the inputs (nan entries left out).

    The methods share one call of deletion, insertion and faithfulness (the same perturbations); max-sensitivity and
    randomization explain the unit again with each method and its ``options``.

    Args:
        model: the network.
        layer: the unit's layer.
        unit: the unit index.
        inputs: the inputs, ``[N, ...]`` (the first ``settings.inputs`` are scored).
        maps: ``{method: maps [N, ...] like inputs}`` (image maps are summed over channels first).
        settings: how to score.
        options: ``{method: keyword arguments of neuron_attributions}`` for explaining again.
        layers: the layers the cascading randomization re-initializes
            (:func:`interp.optvis.scores.randomizable_layers`; found when ``None``).

    Returns:
        ``{metric: [one value per method, in the order of maps]}``, the metrics in the order of :data:`SCORES`.
    """
    methods = list(maps)
    x = inputs[: settings.inputs] if settings.inputs else inputs
    n = x.shape[0]
    stacked = torch.stack([_pixels(maps[m][:n]).float() for m in methods])  # [M, N, ...]
    n_features = int(stacked[0, 0].numel())
    per_step = max(1, math.ceil(n_features / settings.steps))
    units = [unit] * len(methods)
    out: dict[str, list[float]] = {}
    out["deletion_auc"] = _means(sc.deletion(model, layer, units, x, stacked, features_per_step=per_step).auc)
    out["insertion_auc"] = _means(sc.insertion(model, layer, units, x, stacked, features_per_step=per_step).auc)
    faith = sc.faithfulness_correlation(model, layer, units, x, stacked, n_runs=settings.runs, seed=settings.seed)
    out["faithfulness"] = _means(faith.correlation)
    out["sparseness"] = _means(sc.sparseness(stacked).gini)
    order = list(layers) if layers is not None else sc.randomizable_layers(model, layer, x)
    sensitivity, randomization = [], []
    for k, method in enumerate(methods):
        explain = _explainer(layer, method, dict((options or {}).get(method, {})))
        sens = sc.max_sensitivity(
            model,
            [unit],
            x,
            explain,
            maps=stacked[k : k + 1],
            radius=settings.radius,
            n_samples=settings.noise_samples,
            seed=settings.seed,
        )
        sensitivity.append(_means(sens.relative)[0])
        mprt = sc.model_parameter_randomization(
            model,
            layer,
            [unit],
            x,
            explain,
            maps=stacked[k : k + 1],
            seed=randomization_seed(settings.seed),
            layers=order,
        )
        randomization.append(_means(mprt.similarity.flatten(1))[0])
    out["max_sensitivity"] = sensitivity
    out["randomization"] = randomization
    return {metric: out[metric] for metric in SCORES}


def _explainer(layer: str, method: str, options: dict) -> sc.Explain:
    def explain(model: nn.Module, inputs: torch.Tensor, unit: int) -> torch.Tensor:
        return _pixels(neuron_attributions(model, layer, unit, inputs, method=method, **options).maps)

    return explain


def _means(values: torch.Tensor) -> list[float]:
    """The mean of each row of ``[R, ...]`` over its finite entries (nan when none is)."""
    flat = values.detach().double().reshape(values.shape[0], -1)
    ok = torch.isfinite(flat)
    total = torch.where(ok, flat, torch.zeros_like(flat)).sum(1)
    count = ok.sum(1)
    return [float(t / c) if c else float("nan") for t, c in zip(total.tolist(), count.tolist())]


def _median(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.median()) if finite.numel() else float("nan")


def _number(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.3g}"


def scores_table(layer: str, methods: Sequence[str], scores: dict[str, torch.Tensor], n_units: int, k: int) -> str:
    """The markdown table of a layer's scores: one row per method, one column per metric.

    Each cell is the median over the units scored.

    Args:
        layer: the layer name.
        methods: the methods, in the order of the rows of the score tensors.
        scores: ``{metric: [methods, units]}`` (nan where a unit was not scored).
        n_units: number of units scored (for the note).
        k: number of examples scored per unit (for the note).

    Returns:
        The note and the table, in markdown.
    """
    head = "| method | " + " | ".join(score_header(m) for m in SCORES) + " |"
    rule = "|---|" + "---:|" * len(SCORES)
    rows = [
        f"| {TITLES.get(method, method)} | "
        + " | ".join(_number(_median(scores[metric][i])) for metric in SCORES)
        + " |"
        for i, method in enumerate(methods)
    ]
    note = (
        f"Explanation scores of **{layer}**: the median over {n_units} units of each unit's mean over its top "
        f"{k} examples (interp.optvis.scores)."
    )
    return "\n".join([note, "", head, rule, *rows])


def attribution_picture(images: torch.Tensor, maps: dict[str, torch.Tensor], title: str) -> torch.Tensor:
    """The examples in the first row, then one row per method: each map over its image.

    Every map is scaled to its own largest magnitude, with a colour bar from -max to +max.

    Args:
        images: the examples, ``[k, C, H, W]``.
        maps: ``{method: maps like images}``.
        title: the picture's title.

    Returns:
        The picture, ``[3, H, W]`` in [0, 1].
    """
    k = images.shape[0]
    rows = [grid(images, nrow=k, min_size=56)] + [
        grid(heatmap_overlay(images, m), nrow=k, min_size=56) for m in maps.values()
    ]
    titles = ["maximal activation examples", *(TITLES.get(m, m) for m in maps)]
    stacked = titled_column(rows, titles)
    return titled_row([stacked, colour_legend(int(stacked.shape[-2]))], ["", ""], title=title)


def attribute_units(
    model: nn.Module,
    dataset: Dataset,
    reporter: Reporter,
    layer: str,
    settings: AttributionSettings | None = None,
    *,
    units: Units = None,
    examples: Examples | None = None,
    step: int = 0,
) -> AttributionSummary:
    """Cross-check our layer capture against Captum on ``n_check`` inputs (activations of every
    unit; input gradients of the first ``check_units`` units, None: all), then log per unit the
    picture ``attribution/<layer>/unit_XXX`` (the examples, then one row of maps per method of
    ``methods``: ``ig``, ``saliency``, ``deeplift``, ``occlusion``, ``gradcam``; red positive,
    blue negative, with a colour bar) and per-layer histograms and means of the IG completeness
    error and, per method, the model-randomization Spearman correlation (Adebayo et al. 2018; on the
    first ``sanity_units`` units, None: all; it is a statistic of the layer, and costs two more
    attributions per unit and method). A
    mismatch above ``tolerance`` raises :class:`AttributionMismatchError` (``on_mismatch="raise"``)
    or logs a warning (``"warn"``).

    ``scores`` (True: :class:`ScoreSettings` defaults; a mapping: those settings; False: none) scores every
    method's maps of the first ``score_units`` units (None: all; see the module's docstring): a markdown table
    ``attribution_scores/<layer>/table`` (TensorBoard's TEXT tab; method by metric, median over the units), scalars
    ``attribution_scores/<layer>/<metric>/<method>`` (the same medians, when finite), each scored unit's values in the
    description of its picture, and per unit in ``attribution.pt``.

    Args:
        model: the network.
        dataset: the data set the examples come from.
        reporter: where the pictures, scalars, histograms and results go.
        layer: the layer name.
        settings: the :class:`AttributionSettings` (None: the defaults).
        units: one unit, several, or ``None`` for all.
        examples: top-k examples already mined (mined here when ``None`` or when they lack units or examples).
        step: the global step everything is logged at.

    Returns:
        The Captum differences, the means over the units and the median scores.

    Raises:
        InterpError: an unknown layer, a unit out of range, or an empty data set.
        AttributionMismatchError: a mismatch above ``tolerance`` with ``on_mismatch="raise"``.
    """
    s = settings or AttributionSettings()
    k, methods, tolerance = s.k, s.methods, s.tolerance
    unit_list = resolve_units(model, layer, units, example_input(dataset))
    checked = unit_list if s.check_units is None else unit_list[: s.check_units]
    check = agreement(model, layer, example_input(dataset, s.n_check), checked)
    summary = AttributionSummary(check.activation_maxdiff, check.grad_maxdiff, checked)
    reporter.scalar(f"captum/{layer}/activation_maxdiff", check.activation_maxdiff, step)
    reporter.scalar(f"captum/{layer}/grad_maxdiff", check.grad_maxdiff, step)
    if not check.ok(tolerance):
        message = (
            f"captured values of {layer} disagree with Captum: activation max diff "
            f"{check.activation_maxdiff:.3g}, gradient max diff {check.grad_maxdiff:.3g} "
            f"(tolerance {tolerance:g}); the pictures of this layer cannot be trusted"
        )
        if s.on_mismatch == "raise":
            raise AttributionMismatchError(message)
        log.warning(message)

    if examples is None or not examples.covers(unit_list, k):
        examples = mine_examples(model, dataset, layer, unit_list, TopKSettings(k=k, batch_size=s.batch_size))
    metrics: dict[str, list[float]] = defaultdict(list)
    randomized = randomized_copy(model) if s.sanity_check else None  # one copy for every unit
    sane = set(unit_list if s.sanity_units is None else unit_list[: s.sanity_units])
    scoring = s.scores
    scored = set(unit_list if s.score_units is None else unit_list[: s.score_units]) if scoring is not None else set()
    cascade = sc.randomizable_layers(model, layer, example_input(dataset)) if scored else None
    per_method = {
        m: {"n_steps": s.ig_steps, "internal_batch_size": s.internal_batch_size} if m == "ig" else {} for m in methods
    }
    records = []  # this rank's share of the units; rank zero writes everyone's
    for unit in my_share(unit_list):
        images = topk_images(examples.top, examples.dataset, examples.row(unit))[:k]
        values: dict[str, float] = {}
        maps: dict[str, torch.Tensor] = {}
        for method in methods:
            options = per_method[method]
            result = neuron_attributions(model, layer, unit, images, method=method, **options)
            maps[method] = result.maps
            if result.completeness is not None:
                values["ig_completeness_error"] = float(result.completeness.mean())
            if randomized is not None and unit in sane:
                sanity = randomization_check(
                    model, layer, unit, images, method=method, randomized=randomized, trained=result.maps, **options
                )
                values[f"randomization_spearman_{SHORT.get(method, method)}"] = sanity.randomized
                values[f"same_model_spearman_{SHORT.get(method, method)}"] = sanity.same_model
        unit_scores = None
        if scoring is not None and unit in scored:
            try:
                unit_scores = score_unit(model, layer, unit, images, maps, scoring, per_method, cascade)
            except (RuntimeError, ValueError) as exc:  # the maps and pictures stand without their scores
                log.warning("%s unit %d: the explanation scores failed (%s: %s)", layer, unit, type(exc).__name__, exc)
        picture = attribution_picture(images, maps, title=f"{layer} unit {unit}")
        records.append((unit, picture, values, images, {m: t.sum(1) for m, t in maps.items()}, unit_scores))
    saved: dict[str, list[torch.Tensor]] = defaultdict(list)
    score_tensors = {
        metric: torch.full((len(methods), len(unit_list)), float("nan"), dtype=torch.float64) for metric in SCORES
    }
    column = {u: i for i, u in enumerate(unit_list)}
    for unit, picture, values, images, unit_maps, unit_scores in (r for part in gather_shares(records) for r in part):
        tag = unit_tag("attribution", layer, unit)
        description = (
            f"{layer} unit {unit}: its top examples and their attribution maps "
            f"({', '.join(methods)}); red raises the unit, blue lowers it, on the scale of the colour bar."
        )
        if unit_scores is not None:
            for metric, per in unit_scores.items():
                score_tensors[metric][:, column[unit]] = torch.tensor(per, dtype=torch.float64)
            description += "\n\n" + _unit_scores_markdown(methods, unit_scores)
        reporter.image(tag, picture, step, description=description)
        for name, value in values.items():
            metrics[name].append(value)
        saved["examples"].append(images)
        for method, unit_map in unit_maps.items():
            saved[method].append(unit_map)
    summary.means = {name: _mean(v) for name, v in metrics.items()}
    if scored:
        summary.scores = {
            metric: {m: _median(score_tensors[metric][i]) for i, m in enumerate(methods)} for metric in SCORES
        }
        assert scoring is not None
        n_inputs = min(k, scoring.inputs or k)
        table = scores_table(layer, methods, score_tensors, len(scored), n_inputs)
        reporter.text(f"attribution_scores/{layer}/table", table, step)
        for metric, per_method_median in summary.scores.items():
            for method, median in per_method_median.items():
                if math.isfinite(median):  # nan: no unit had the score (e.g. a constant map has no correlation)
                    reporter.scalar(f"attribution_scores/{layer}/{metric}/{method}", median, step)
    if all(len(v) == len(unit_list) and len({tuple(t.shape) for t in v}) == 1 for v in saved.values()):
        stacked = {n: torch.stack(v) for n, v in saved.items()}
        if "examples" in stacked:
            record = AttributionRecord(
                list(unit_list),
                stacked.pop("examples"),
                stacked,
                list(methods) if scored else None,
                score_tensors if scored else None,
            )
            save_record(reporter, layer, record)
    for name, per_unit in metrics.items():
        reporter.histogram(f"attribution/{layer}/{name}", torch.tensor(per_unit), step)
    for name, mean in summary.means.items():
        if not name.startswith("same_model"):
            reporter.scalar(f"attribution/{layer}/mean_{name}", mean, step)
    log.info("%s: Captum check and attribution means %s", layer, {k: round(v, 8) for k, v in summary.means.items()})
    if summary.scores:
        log.info("%s: explanation scores (median over units) %s", layer, summary.scores)
    return summary


def _unit_scores_markdown(methods: Sequence[str], unit_scores: dict[str, list[float]]) -> str:
    """One line per method: its scores for this unit."""
    return "\n".join(
        f"- {TITLES.get(m, m)}: "
        + ", ".join(f"{SCORES[metric][0]} {_number(unit_scores[metric][i])}" for metric in SCORES)
        for i, m in enumerate(methods)
    )
