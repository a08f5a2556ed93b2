"""Lightning callbacks that run interpretations at the end of training (or on demand).

::

    from interp.callbacks import TopKExamples, FeatureVisualization, UnitPanel
    trainer = Trainer(callbacks=[TopKExamples("dense_1", units=[32]), UnitPanel("dense_1", units=[32])])

Each callback is a thin adapter over one step of :mod:`interp.steps`; ``callback.apply(model,
data)`` runs that step without a trainer.
"""

from interp.callbacks.atlas import Atlas
from interp.callbacks.attribution import AttributionCheck
from interp.callbacks.base import InterpretationCallback
from interp.callbacks.dream import DeepDream
from interp.callbacks.expressions import Expressions
from interp.callbacks.featvis import FeatureVisualization
from interp.callbacks.inversion import Inversion
from interp.callbacks.panel import UnitPanel
from interp.callbacks.projector import EmbeddingProjector
from interp.callbacks.topk import TopKExamples
from interp.steps.attribution import AttributionMismatchError

__all__ = [
    "Atlas",
    "AttributionCheck",
    "AttributionMismatchError",
    "DeepDream",
    "EmbeddingProjector",
    "Expressions",
    "FeatureVisualization",
    "InterpretationCallback",
    "Inversion",
    "TopKExamples",
    "UnitPanel",
]
