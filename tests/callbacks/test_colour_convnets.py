"""Feature visualization of colour convnets: a ResNet-18 over a small image folder at 64 px, a colour
CNN whose data a prior can learn, and the trained face networks at their input sizes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from interp.callbacks import FeatureVisualization


def _image_folder(root: Path, n_per_class: int = 12, size: int = 64) -> Path:
    g = torch.Generator().manual_seed(0)
    for c, name in enumerate(["circles", "stripes"]):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
            phase = float(torch.rand(1, generator=g)) * 6
            base = torch.sin((xx**2 + yy**2) * 12 + phase) if c == 0 else torch.sin(xx * 10 + phase)
            rgb = torch.stack([base, base.roll(3, 0), -base]) * 0.5 + 0.5
            arr = (rgb.permute(1, 2, 0).numpy() * 255).astype("uint8")
            Image.fromarray(arr).save(root / name / f"{i:02d}.png")
    return root


def test_resnet18_on_a_small_image_folder_falls_back_from_the_prior_with_one_warning(tmp_path):
    """24 photos are too few for a data prior: one warning says so, and the prototype view (the most
    legible view that needs no prior) is rendered instead, for every channel, at 64 px."""
    from torchvision.models import resnet18

    from interp.data.images import ImageFolderDataset
    from interp.models.normalized import Normalized

    torch.manual_seed(0)
    model = Normalized.imagenet(resnet18(num_classes=10)).eval()
    data = ImageFolderDataset(_image_folder(tmp_path / "photos"))
    fv = FeatureVisualization(
        "model.layer2", units=range(4), steps=4, views=("plain", "prior"), shape=(3, 64, 64), progress=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        views = fv.apply(model, data)
    ours = [str(w.message) for w in caught if "prior view" in str(w.message)]
    assert len(ours) == 1 and "24 images, fewer than the 1000" in ours[0], [str(w.message) for w in caught]
    assert list(views.renderings) == ["plain", "prototype"] and views.units == [0, 1, 2, 3]
    for rendering in views.renderings.values():
        assert rendering.image.shape == (4, 3, 64, 64)
    assert views.statistic == "spatial max"


class ColourNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)
        self.example_input_array = torch.zeros(1, 3, 32, 32)

    def forward(self, x):
        return self.head(self.conv2(self.relu(self.conv1(x))).mean((2, 3)))


def test_a_prior_learns_colour_data_it_can_serve(tmp_path, monkeypatch):
    """1,200 colour images of 32 px: the prior (a VAE) is trained on them and the prior view renders,
    with no warning."""
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1200, 3, 8, 8, generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)
    data = TensorDataset(images, torch.zeros(1200, dtype=torch.long))
    torch.manual_seed(0)
    fv = FeatureVisualization("conv2", units=[0, 1], steps=4, views=("plain", "prior"), progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*prior view.*")
        views = fv.apply(ColourNet().eval(), data)
    assert list(views.renderings) == ["plain", "prior"]
    assert views.renderings["prior"].image.shape == (2, 3, 32, 32)
    assert list((tmp_path / "cache").rglob("prior-*.pt")), "the colour prior was not cached"


@pytest.mark.parametrize(("net", "layer", "size"), [("recognition", "layer1", 150), ("expression", "dense1", 112)])
def test_face_network_channels_render_at_their_input_size(faceapi_dir, net, layer, size):
    from interp.models.faceapi import FaceExpressionNet, FaceRecognitionNet

    cls = FaceRecognitionNet if net == "recognition" else FaceExpressionNet
    model = cls.from_weights(faceapi_dir).eval()
    fv = FeatureVisualization(layer, units=[0, 3], steps=4, shape=(3, size, size), progress=False)
    views = fv.apply(model)
    image = views.renderings["plain"].image
    assert image.shape == (2, 3, size, size) and bool(torch.isfinite(image).all())
    assert bool((views.activations["plain"] > 0).all()), "the optimization did not excite the channels"
