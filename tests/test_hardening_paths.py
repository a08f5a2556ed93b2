"""Result files of dotted layer names never collide, and top-k refuses data in a random order."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from interp.optvis import mine_topk
from interp.report import Reporter, tag_to_path
from interp.steps import deep_dream, embedding_projector, inversion


def dotted_net() -> nn.Module:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    return nn.Sequential(features, nn.Flatten(), nn.Linear(4 * 12 * 12, 3)).eval()


def test_tag_to_path_keeps_the_dots(tmp_path):
    assert tag_to_path(tmp_path, "inversion/features.3") == tmp_path / "inversion" / "features.3.png"
    assert (
        tag_to_path(tmp_path, "dream/layer3.1.conv2/image_0") == tmp_path / "dream" / "layer3.1.conv2" / "image_0.png"
    )


def test_two_dotted_layers_in_one_run_leave_two_files_for_every_kind(tmp_path):
    model = dotted_net()
    images = torch.rand(64, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(images, torch.arange(64) % 3)
    reporter = Reporter(tmp_path)
    for layer in ("0.0", "0.2"):
        inversion(model, data, reporter, layer=layer, n_examples=2, steps=2)
        deep_dream(model, reporter, layer=layer, images=images[:1], size=None, octaves=1, steps_per_octave=1, roll=0)
        embedding_projector(model, data, reporter, layer=layer, n=64, tsne=True)
    root = tmp_path / "interp"
    for kind in ("inversion", "dream", "tsne"):
        assert (root / kind / "0.0.png").is_file() and (root / kind / "0.2.png").is_file(), kind
        assert (root / kind / "0.0.png").read_bytes() != (root / kind / "0.2.png").read_bytes(), kind


def test_top_k_refuses_a_shuffled_loader():
    model = dotted_net()
    data = TensorDataset(torch.rand(20, 1, 12, 12), torch.zeros(20))
    with pytest.raises(ValueError, match="fixed order"):
        mine_topk(model, "0.0", DataLoader(data, batch_size=4, shuffle=True), k=2)
    assert mine_topk(model, "0.0", DataLoader(data, batch_size=4), k=2).indices.shape == (4, 2)
