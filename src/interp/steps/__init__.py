"""The interpretation steps: plain functions over (model, data, reporter, settings).

Each one calls :mod:`interp.optvis` and hands its pictures, scalars and tensors to a
:class:`~interp.report.Reporter`. The Lightning callbacks (:mod:`interp.callbacks`) gather these
inputs from a trainer and call them; ``python -m interp visualize``, the notebooks and users'
scripts call them directly, without a Trainer::

    from interp.report import Reporter
    from interp.steps import FeatVisSettings, ViewInputs, topk_examples, feature_visualization
    reporter = Reporter("runs/mine")
    examples = topk_examples(model, dataset, reporter, layer="dense_1", units=range(8))
    settings = FeatVisSettings(steps=64)
    feature_visualization(model, reporter, "dense_1", range(8), settings, ViewInputs(examples=examples))
"""

from interp.steps.attribution import (
    AttributionMismatchError,
    AttributionSettings,
    AttributionSummary,
    ScoreSettings,
    attribute_units,
)
from interp.steps.common import resolve_units, unit_tag
from interp.steps.dream import DreamSettings, deep_dream, load_images
from interp.steps.expressions import ClassPictures, ExpressionSettings, expressions
from interp.steps.featvis import FeatVisSettings, ViewInputs, feature_visualization
from interp.steps.inversion import InversionSettings, inversion
from interp.steps.panel import PanelInputs, PanelSettings, unit_panels
from interp.steps.projector import Embedding, ProjectorSettings, embedding_projector
from interp.steps.topk import Examples, TopKSettings, mine, topk_examples

__all__ = [
    "AttributionMismatchError",
    "AttributionSettings",
    "AttributionSummary",
    "ClassPictures",
    "DreamSettings",
    "Embedding",
    "Examples",
    "ExpressionSettings",
    "FeatVisSettings",
    "InversionSettings",
    "PanelInputs",
    "PanelSettings",
    "ProjectorSettings",
    "ScoreSettings",
    "TopKSettings",
    "ViewInputs",
    "attribute_units",
    "deep_dream",
    "embedding_projector",
    "expressions",
    "feature_visualization",
    "inversion",
    "load_images",
    "mine",
    "resolve_units",
    "topk_examples",
    "unit_panels",
    "unit_tag",
]
