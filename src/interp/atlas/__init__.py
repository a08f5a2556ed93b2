"""The unit atlas: browsable static HTML pages over a run's interpretation results.

Example::

    from interp.atlas import build_atlas
    index = build_atlas("runs/mnist_mlp/2026-11-26_10-00-00", dataset=mnist_train, model=model)
    # open index (file://.../atlas/index.html) in any browser, offline
"""

from interp.atlas.build import (
    STEPS,
    CropBox,
    build_atlas,
    diverging,
    layer_folder,
    layer_from_folder,
    load_results,
    png_bytes,
    result_name,
)

__all__ = [
    "STEPS",
    "CropBox",
    "build_atlas",
    "diverging",
    "layer_folder",
    "layer_from_folder",
    "load_results",
    "png_bytes",
    "result_name",
]
