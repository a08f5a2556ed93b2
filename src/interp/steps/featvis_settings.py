"""The settings of feature visualization (:class:`FeatVisSettings`) and what its views read besides
them (:class:`ViewInputs`); :mod:`interp.steps.featvis` runs the views, :mod:`interp.steps.render_views`
renders them.

>>> FeatVisSettings(steps=64).image_key() == FeatVisSettings(steps=64, views=("plain", "maco"), k=4).image_key()
True
>>> FeatVisSettings(views=("sketch",))
Traceback (most recent call last):
    ...
interp.settings.SettingsError: FeatVisSettings: unknown view 'sketch': use plain, prior, maco, prototype
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import nn

from interp.settings import Settings
from interp.steps.topk import Examples

__all__ = ["KINDS", "NOT_IMAGE", "PLAIN_PARAMS", "VIEWS", "FeatVisSettings", "ViewInputs"]

#: The views (see :mod:`interp.steps.featvis`).
VIEWS = ("plain", "prior", "maco", "prototype")
#: What a view optimizes for a unit: ``channel`` (the mean over positions; a neuron for dense
#: layers), ``unit`` (the centre position), ``peak`` (the position where the unit's top-k examples
#: peak most often, :func:`~interp.optvis.neuron.peak_positions`; needs examples with positions).
KINDS = ("channel", "unit", "peak")
#: The plain view's parameterization: ``default`` (:func:`interp.optvis.param.image`) or ``dark``
#: (:func:`interp.optvis.neuron.dark_image`: Fourier 1/f^1.5, a dark start; small grey digits).
PLAIN_PARAMS = ("default", "dark")
#: The settings that do not change a unit's image in a view (which views, the chunk size, how many
#: examples to mine): :meth:`FeatVisSettings.image_key` leaves them at their defaults.
NOT_IMAGE = ("views", "max_batch", "k")


@dataclass(frozen=True)
class FeatVisSettings(Settings):
    """The settings of a feature visualization (:func:`~interp.steps.featvis.feature_visualization`,
    :class:`~interp.callbacks.FeatureVisualization`); refused with a one-line
    :class:`~interp.settings.SettingsError` when they cannot work.

    Attributes:
        views: the views to render, in order (:data:`VIEWS`): ``plain`` (what maximizes the unit),
            ``prior`` (in the latent space of a generator learned on the data), ``maco`` (Fourier
            phase only, magnitude of the data), ``prototype`` (conv channels: the unit's top-k
            examples aligned at their peak, averaged and accentuated for the unit; dense layers:
            their plain mean, accentuated).
        steps: optimization steps per view (>= 1).
        lr: the Adam learning rate (a finite number >= 0).
        seed: seeds every unit's start (with the unit) and the transforms.
        transforms: the transforms of :func:`interp.optvis.render`: ``"default"`` (chosen by image
            size), None, or a callable; the prior view runs without them.
        kind: what is optimized for a unit (:data:`KINDS`): ``channel``, ``unit`` (conv layers: the
            centre position) or ``peak`` (conv layers: Lucid's neuron objective at the position where
            the unit's top-k examples peak most often).
        shape: (C, H, W) of the input; None: the model's ``example_input_array``.
        tv_weight: the plain view's total-variation penalty (>= 0; 0 gives the plain maximum).
        l1_weight: the plain view's L1 penalty towards black (>= 0).
        l1_relative: ``l1_weight`` in units of each unit's k-th best dataset activation.
        plain_param: the plain view's parameterization (:data:`PLAIN_PARAMS`): ``default`` or
            ``dark`` (Fourier 1/f^1.5 from a dark start, for small grey digits).
        prior_max_norm: the prior view's trust radius of the latent code around the origin (None:
            twice the typical norm of a prior code, :func:`interp.optvis.latent.default_max_norm`).
        max_batch: the most units optimized in one batch (>= 1). None: all at once on the CPU; on
            CUDA a first chunk of 8 units measures the memory a unit takes and the rest go in chunks
            that fill 80% of the free memory (halved again on out-of-memory). Chunks give the same
            images.
        k: examples per unit to mine when a view needs them (``prototype``, ``kind="peak"``,
            ``l1_relative``, the prior view's starts) and none of the layer were mined before (>= 1).
    """

    views: tuple[str, ...] = ("plain",)
    steps: int = 256
    lr: float = 0.05
    seed: int = 0
    transforms: Callable | str | None = "default"
    kind: str = "channel"
    shape: tuple[int, ...] | None = None
    tv_weight: float = 0.0
    l1_weight: float = 0.0
    l1_relative: bool = False
    plain_param: str = "default"
    prior_max_norm: float | None = None
    max_batch: int | None = None
    k: int = 16

    def check(self) -> None:
        """Refuse values that cannot work.

        Raises:
            SettingsError: no view or an unknown one, an unknown ``kind`` or ``plain_param``, a
                ``shape`` that is not (C, H, W), numbers out of range.
        """
        if isinstance(self.views, str) or not self.views:
            self.fail(f"views must name at least one view ({', '.join(VIEWS)}), got {self.views!r}")
        for view in self.views:
            if view not in VIEWS:
                self.fail(f"unknown view {view!r}: use {', '.join(VIEWS)}")
        self.at_least("steps", 1)
        self.finite("lr", 0)
        self.at_least("seed", 0)
        if not (self.transforms is None or self.transforms == "default" or callable(self.transforms)):
            self.fail(f"transforms must be 'default', None or a callable, got {self.transforms!r}")
        self.one_of("kind", KINDS)
        if self.shape is not None and (
            len(self.shape) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.shape)
        ):
            self.fail(f"shape must be (C, H, W) of whole numbers >= 1, got {self.shape!r}")
        self.finite("tv_weight", 0)
        self.finite("l1_weight", 0)
        if not isinstance(self.l1_relative, bool):
            self.fail(f"l1_relative must be True or False, got {self.l1_relative!r}")
        self.one_of("plain_param", PLAIN_PARAMS)
        self.finite("prior_max_norm", 0, optional=True)
        self.at_least("max_batch", 1, optional=True)
        self.at_least("k", 1)

    def image_key(self) -> FeatVisSettings:
        """The settings that decide the images, the others (:data:`NOT_IMAGE`) at their defaults: the
        key under which the run's store files a feature visualization (equal keys, equal images), the
        same for a :class:`~interp.steps.panel.PanelSettings` with these settings.

        Returns:
            A :class:`FeatVisSettings` (never a subclass).
        """
        decides = {f.name: getattr(self, f.name) for f in fields(FeatVisSettings) if f.name not in NOT_IMAGE}
        return FeatVisSettings(**decides)

    @property
    def needs_examples(self) -> bool:
        """Whether the views need the layer's top-k examples (``prototype``, ``kind="peak"``, a relative L1)."""
        return "prototype" in self.views or self.kind == "peak" or (self.l1_relative and self.l1_weight != 0)


@dataclass
class ViewInputs:
    """What the views read besides their settings (each None when no view needs it).

    Attributes:
        prior: an ``ImagePrior`` or a decoder, for the prior view.
        magnitude: the MaCo view's Fourier magnitude (None: its default).
        examples: the layer's top-k examples (units they lack are mined); the prototype view, the
            prior view's starts, ``kind="peak"``, ``l1_relative`` and the ratios read them.
    """

    prior: nn.Module | None = None
    magnitude: torch.Tensor | None = None
    examples: Examples | None = None
