"""Lightning callbacks that run interpretations at the end of training (or on demand).

::

    from interp.callbacks import TopKExamples, FeatureVisualization, UnitPanel
    trainer = Trainer(callbacks=[TopKExamples(layer="dense_1", units=[32]), UnitPanel("dense_1", units=[32])])
"""

from interp.callbacks.attribution import AttributionCheck, AttributionMismatchError
from interp.callbacks.base import InterpretationCallback, parse_units, shared_results
from interp.callbacks.dream import DeepDream
from interp.callbacks.featvis import FeatureVisualization
from interp.callbacks.inversion import Inversion
from interp.callbacks.panel import UnitPanel
from interp.callbacks.projector import EmbeddingProjector
from interp.callbacks.topk import TopKExamples

__all__ = ["AttributionCheck", "AttributionMismatchError", "DeepDream", "EmbeddingProjector", "FeatureVisualization", "InterpretationCallback", "Inversion", "TopKExamples", "UnitPanel",
           "parse_units", "shared_results"]
