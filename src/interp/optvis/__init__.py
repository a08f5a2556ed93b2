"""``interp.optvis``: the interpretation algorithms, in pure torch.

Every algorithm takes an ``nn.Module`` plus layer names, units and tensors and returns tensors or
a small dataclass. Nothing here imports Lightning, Hydra or TensorBoard.

The verbs take their arguments in one order: the model, then what is optimized or read, then
the target: ``render(model, objective)``, ``dream(model, image, objective)``,
``invert(model, layer, images=...)``, ``mine_topk(model, layer, data)``.
"""

from interp.optvis import lrp, objectives, param, scores, transforms
from interp.optvis.capture import (
    Capture,
    capture,
    expected_input_shape,
    frozen,
    get_layer,
    layer_names,
    layer_size,
    model_device,
)
from interp.optvis.dream import Dream, dream, dream_gradient, octave_sizes
from interp.optvis.inputs import as_image_batch
from interp.optvis.invert import Reconstruction, invert
from interp.optvis.render import Rendering, render, render_units
from interp.optvis.topk import TopK, all_gather_topk, merge_topk, mine_topk, shard_range

__all__ = [
    "Capture",
    "Dream",
    "Reconstruction",
    "Rendering",
    "TopK",
    "all_gather_topk",
    "as_image_batch",
    "capture",
    "dream",
    "dream_gradient",
    "expected_input_shape",
    "frozen",
    "get_layer",
    "invert",
    "layer_names",
    "layer_size",
    "lrp",
    "merge_topk",
    "mine_topk",
    "model_device",
    "objectives",
    "octave_sizes",
    "param",
    "render",
    "render_units",
    "scores",
    "shard_range",
    "transforms",
]
