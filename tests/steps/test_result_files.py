"""What the steps leave on disk: result files of dotted layer names (``features.0``, ``layer3.1.conv2``)
never collide, for every kind of picture."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from interp.report import Reporter
from interp.steps import deep_dream, embedding_projector, inversion
from interp.steps.dream import DreamSettings
from interp.steps.inversion import InversionSettings
from interp.steps.projector import ProjectorSettings


def dotted_net() -> nn.Module:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    return nn.Sequential(features, nn.Flatten(), nn.Linear(4 * 12 * 12, 3)).eval()


def test_two_dotted_layers_in_one_run_leave_two_files_for_every_kind(tmp_path):
    model = dotted_net()
    images = torch.rand(64, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(images, torch.arange(64) % 3)
    reporter = Reporter(tmp_path)
    for layer in ("0.0", "0.2"):
        inversion(model, data, reporter, layer, InversionSettings(n_examples=2, steps=2))
        dream = DreamSettings(size=None, octaves=1, steps_per_octave=1, roll=0)
        deep_dream(model, reporter, layer, dream, images=images[:1])
        embedding_projector(model, data, reporter, layer, ProjectorSettings(n=64, tsne=True))
    root = tmp_path / "interp"
    for kind in ("inversion", "dream", "tsne"):
        assert (root / kind / "0.0.png").is_file() and (root / kind / "0.2.png").is_file(), kind
        assert (root / kind / "0.0.png").read_bytes() != (root / kind / "0.2.png").read_bytes(), kind
