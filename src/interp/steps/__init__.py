"""The interpretation steps: plain functions over (model, data, reporter, settings).

Each one calls :mod:`interp.optvis` and hands its pictures, scalars and tensors to a
:class:`~interp.report.Reporter`. The Lightning callbacks (:mod:`interp.callbacks`) gather these
inputs from a trainer and call them; ``python -m interp visualize``, the notebooks and users'
scripts call them directly, without a Trainer::

    from interp.report import Reporter
    from interp.steps import topk_examples, feature_visualization
    reporter = Reporter("runs/mine")
    examples = topk_examples(model, dataset, reporter, layer="dense_1", units=range(8))
    feature_visualization(model, reporter, layer="dense_1", units=range(8), examples=examples)
"""

from interp.steps.attribution import AttributionMismatchError, AttributionSummary, attribute_units
from interp.steps.common import resolve_units, unit_tag
from interp.steps.dream import deep_dream, load_images
from interp.steps.expressions import ClassPictures, ExpressionSettings, expressions
from interp.steps.featvis import feature_visualization
from interp.steps.inversion import inversion
from interp.steps.panel import unit_panels
from interp.steps.projector import Embedding, embedding_projector
from interp.steps.topk import Examples, mine, topk_examples

__all__ = [
    "AttributionMismatchError",
    "AttributionSummary",
    "ClassPictures",
    "Embedding",
    "Examples",
    "attribute_units",
    "deep_dream",
    "embedding_projector",
    "ExpressionSettings",
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
