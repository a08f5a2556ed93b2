"""interp.optvis.attribution cross-checked with Captum: gradient and activation agree (and the check fails when
capture breaks), integrated gradients' completeness, the randomization check, and every method on a conv unit."""

import pytest
import torch
from torch import nn

from helpers import small_cnn_layers
from interp.optvis.attribution import agreement, neuron_attributions, randomization_check


class UserCNN(nn.Module):
    """A user's small CNN with in-place ReLUs (the layers of test_callbacks.py's ``UserCNN``)."""

    def __init__(self):
        super().__init__()
        self.features, self.head = small_cnn_layers()

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def break_capture(monkeypatch):
    """Deliberately break layer capture: keep the hooked tensor itself (no copy) and let the
    forward pass run on, so the in-place ReLU after the layer overwrites what was captured."""
    import interp.optvis.attribution as attribution
    from interp.optvis.capture import Capture

    monkeypatch.setattr(attribution, "Capture", lambda model, layers: Capture(model, layers, stop=False, clone=False))


def test_agreement_passes_on_mlp_and_inplace_cnn_and_fails_when_capture_breaks(trained_mlp, mnist_small, monkeypatch):
    x = mnist_small[0][:32]
    ok = agreement(trained_mlp, "dense_1", x, [3, 32])
    assert ok.ok(1e-5), ok
    cnn = UserCNN().eval()
    assert agreement(cnn, "features.0", x, [1, 2]).ok(1e-5)
    break_capture(monkeypatch)
    bad = agreement(cnn, "features.0", x, [1, 2])
    assert not bad.ok(1e-5) and bad.activation_maxdiff > 1e-3


def test_ig_completeness_and_randomization(trained_mlp, mnist_small):
    x = mnist_small[0][:8]
    ig = neuron_attributions(trained_mlp, "dense_2", 7, x, n_steps=128)
    assert ig.maps.shape == x.shape
    assert float(ig.completeness.mean()) < 0.01
    for method in ("ig", "saliency"):
        result = (
            randomization_check(trained_mlp, "dense_2", 7, x, method=method, n_steps=32)
            if method == "ig"
            else randomization_check(trained_mlp, "dense_2", 7, x, method=method)
        )
        assert result.randomized < result.same_model, (method, result)


def test_every_attribution_method_on_a_conv_unit(mnist_small):
    from interp.optvis.attribution import METHODS

    x = mnist_small[0][:4]
    cnn = UserCNN().eval()
    for method in METHODS:
        result = neuron_attributions(cnn, "features.3", 5, x, method=method, n_steps=8)
        assert result.maps.shape == x.shape and torch.isfinite(result.maps).all(), method
        assert result.maps.abs().sum() > 0, method
    with pytest.raises(ValueError, match="Grad-CAM needs a conv layer"):
        neuron_attributions(MlpLike(), "1", 0, x, method="gradcam")


class MlpLike(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 2))
