"""``interp.optvis``: the interpretation algorithms, in pure torch.

Every algorithm takes an ``nn.Module`` plus layer names, units and tensors and returns tensors or
a small dataclass. Nothing here imports Lightning, Hydra or TensorBoard.
"""

from interp.optvis import objectives, param, transforms
from interp.optvis.capture import Capture, capture, expected_input_shape, frozen, get_layer, layer_names, layer_size, model_device
from interp.optvis.dream import Dream, dream, dream_gradient
from interp.optvis.invert import Inversion, invert
from interp.optvis.render import Rendering, render, render_units
from interp.optvis.topk import TopK, all_gather_topk, merge_topk, mine_topk, shard_range

__all__ = [
    "Capture", "Dream", "Inversion", "Rendering", "capture", "dream", "dream_gradient", "expected_input_shape",
    "frozen", "get_layer", "invert", "layer_names", "layer_size", "model_device", "objectives", "param", "render",
    "render_units", "transforms", "TopK", "all_gather_topk", "merge_topk", "mine_topk", "shard_range",
]
