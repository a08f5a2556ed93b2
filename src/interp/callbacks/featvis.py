"""``FeatureVisualization``: the input optimized for each unit (activation maximization)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import UnitCallback
from interp.errors import InterpError
from interp.report import Reporter
from interp.steps.common import example_input, model_example, resolve_units
from interp.steps.featvis import FeatVisSettings, ViewInputs, Views, feature_visualization
from interp.steps.topk import Examples, TopKSettings, examples_for
from interp.store import ResultStore

MIN_PRIOR_IMAGES = 1000
"""The fewest training images a data prior is learned from (a VAE of fewer draws nothing readable)."""

MAX_PRIOR_SIDE = 64
"""The largest image side the data prior (a small MLP VAE, trained in seconds to minutes) serves."""


def prior_problem(dataset: Dataset | None, image_shape: Sequence[int]) -> str | None:
    """Why the data prior cannot serve feature visualizations of ``image_shape`` (C, H, W) learned
    from ``dataset``, or None when it can: it needs at least :data:`MIN_PRIOR_IMAGES` images of
    exactly that shape, at most :data:`MAX_PRIOR_SIDE` pixels a side (grayscale or colour).

    Args:
        dataset: the training data (map-style; its first item gives the shape).
        image_shape: the shape of the images the views optimize.

    Returns:
        A reason (one phrase), or None.
    """
    if dataset is None:
        return "there is no data to learn it from"
    n = len(dataset)  # type: ignore[arg-type]
    shape = tuple(example_input(dataset).shape[1:])
    if tuple(image_shape) != shape:
        have, want = "x".join(map(str, shape)), "x".join(map(str, image_shape))
        return f"the data's images are {have}, the visualizations {want}"
    if max(shape[-2:]) > MAX_PRIOR_SIDE:
        return f"its images are {shape[-1]}x{shape[-2]} px, more than the {MAX_PRIOR_SIDE} px a side it serves"
    if n < MIN_PRIOR_IMAGES:
        return f"the data holds {n} images, fewer than the {MIN_PRIOR_IMAGES} it learns from"
    return None


def usable_views(views: Sequence[str], dataset: Dataset | None, image_shape: Sequence[int]) -> tuple[str, ...]:
    """``views`` with ``prior`` replaced by ``prototype`` (the most legible view that needs no learned
    prior) when :func:`prior_problem` finds the data unfit for a prior, with one warning that says why.

    Args:
        views: the views asked for.
        dataset: the training data.
        image_shape: (C, H, W) of the visualizations.

    Returns:
        The views to render, in order, without repeats.
    """
    if "prior" not in views:
        return tuple(views)
    problem = prior_problem(dataset, image_shape)
    if problem is None:
        return tuple(views)
    warnings.warn(
        f"the prior view cannot serve this data ({problem}): showing the prototype view instead", stacklevel=2
    )
    return tuple(dict.fromkeys("prototype" if v == "prior" else v for v in views))


def view_inputs(views: Sequence[str], dataset: Dataset | None, seed: int) -> tuple[nn.Module | None, Any]:
    """What the views need from the data: the prior (an ``ImagePrior``, trained once per data set
    and cached by :func:`interp.models.train_prior`) and the data's Fourier magnitude for MaCo.

    Args:
        views: the views to render.
        dataset: the training data.
        seed: seeds the prior's training.

    Returns:
        ``(prior, magnitude)``, each None when no view needs it.

    Raises:
        InterpError: the prior or maco view without data.
    """
    prior, magnitude = None, None
    if "prior" in views:
        from interp.models.prior import train_prior

        if dataset is None:
            raise InterpError("the prior view needs data to learn the prior from")
        prior = train_prior(dataset, seed=seed)
    if "maco" in views:
        from interp.optvis.maco import magnitude_from_data

        if dataset is None:
            raise InterpError("the maco view needs data to measure the Fourier magnitude")
        images = example_input(dataset, 2048)
        magnitude = magnitude_from_data(images, tuple(images.shape[-2:]))
    return prior, magnitude


def run_examples(
    store: ResultStore, key: tuple[nn.Module, int, str], dataset: Dataset | None, units: list[int], k: int, need: bool
) -> Examples | None:
    """The layer's top-k examples from the run's store (maxima over positions) for a feature
    visualization: reused when a top-k of the layer is filed (the units it lacks are mined), mined
    when the views ``need`` them and none is (and then filed for the steps after); None without
    data, or when nothing is filed and nothing needs them.

    Args:
        store: the run's results.
        key: ``(model, step, layer)``.
        dataset: the data the top-k indices point into.
        units: the units rendered.
        k: examples per unit when they must be mined.
        need: whether the views need examples (prototype, prior starts, peak positions, relative L1).

    Returns:
        :class:`Examples` covering ``units``, or None.
    """
    if dataset is None:
        return None
    model, step, layer = key
    filed = store.get(model, step, layer, "topk", (id(dataset), "max"))
    if filed is not None and not need:
        return filed.extended(model, layer, units)
    if not need:
        return None
    return examples_for(store, key, dataset, units, TopKSettings(k=k, spatial="max"))


class FeatureVisualization(UnitCallback):
    """Optimize one input per unit and view (all units of a view in one batched run) and log each
    (:func:`interp.steps.feature_visualization`). When a :class:`TopKExamples` on the same layer
    ran before it, the achieved activation is also logged as a ratio to the unit's dataset
    maximum; the activation of a conv channel is its spatial max (the statistic the top-k ranks
    by). ``result`` is a :class:`~interp.steps.featvis.Views`; ``settings`` the
    :class:`~interp.steps.featvis_settings.FeatVisSettings` (views, steps, lr, seed, transforms,
    kind, shape, tv_weight, l1_weight, l1_relative, plain_param, prior_max_norm, max_batch, k: each
    documented there). The ``prior`` view's generator is trained on the ``split`` data (once per data
    set, cached); ``prior``, ``maco`` and ``prototype`` read the data; the examples the views need
    (``prototype``, ``kind="peak"``, ``l1_relative``, the prior view's starts) come from a
    :class:`TopKExamples` of the layer, or are mined here (``k`` per unit) when none ran before it:
    the order of the callbacks does not matter. Under DDP each rank renders its share of the units.

    Args:
        layer: layer name.
        units: unit numbers (a list or range); None: every unit.
        settings: a :class:`~interp.steps.featvis_settings.FeatVisSettings`, a mapping of its
            settings, or None (the defaults).
        split, dataset, every_n_epochs, run_on_train_end, on_error, progress: see
            :class:`InterpretationCallback`.
        changes: settings by name (``steps=64``, ``views=["plain", "prior"]``) replacing those of
            ``settings``.

    Raises:
        SettingsError: an unknown setting or one that cannot work (an unknown view or none, ``kind``
            or ``plain_param``; ``max_batch`` or ``k`` below 1, ...).
    """

    result: Views | None
    Settings = FeatVisSettings
    settings: FeatVisSettings

    @property
    def needs_examples(self) -> bool:
        """Whether the views need the layer's top-k examples (``prototype``, ``kind="peak"``, a relative L1)."""
        return self.settings.needs_examples

    @property
    def needs_data(self) -> bool:  # type: ignore[override]
        """Whether the callback reads data: a view other than ``plain``, or one that needs examples."""
        return any(v != "plain" for v in self.settings.views) or self.needs_examples

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> Views:
        settings = self.settings
        example = torch.zeros(1, *settings.shape) if settings.shape is not None else model_example(model)
        if example is None and dataset is not None:
            example = example_input(dataset)
        shown = settings.views
        if example is not None:
            shown = usable_views(settings.views, dataset, tuple(example.shape[1:]))
        prior, magnitude = view_inputs(shown, dataset, settings.seed)
        # the prior view starts at its top examples' codes: with them in either callback order
        need = self.needs_examples or "prior" in shown or "prototype" in shown
        examples = None
        if example is not None:
            units = resolve_units(model, self.layer, self.units, example)
            examples = run_examples(self.store, (model, step, self.layer), dataset, units, settings.k, need)
        views = feature_visualization(
            model,
            reporter,
            self.layer,
            self.units,
            settings.replace(views=shown),
            ViewInputs(prior, magnitude, examples),
            step=step,
            progress=progress,
        )
        self.store.put(model, step, self.layer, "featvis", settings.image_key(), views)
        return views

    def validate(self, model: nn.Module, example: torch.Tensor | None) -> None:
        if self.settings.shape is not None:
            example = torch.zeros(1, *self.settings.shape)
        elif getattr(model, "example_input_array", None) is None:
            raise InterpError(
                f"FeatureVisualization of {self.layer} needs the input shape: set the model's "
                "example_input_array or pass shape=(C, H, W)"
            )
        super().validate(model, example)
