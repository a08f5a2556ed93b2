"""interp: post-hoc interpretation of neural networks with PyTorch Lightning.

The algorithms live in :mod:`interp.optvis` (pure torch). Lightning callbacks in
:mod:`interp.callbacks` run them at the end of training and log image grids to
TensorBoard through :mod:`interp.report`.
"""

__version__ = "0.1.0"
