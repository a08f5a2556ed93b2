"""LRP through Zennit (``interp.optvis.lrp``): conservation, the completeness analogue of LRP: the relevance of the
input sums to the unit's value (computed separately, on the untouched model).

Where conservation must hold: every bias is zero (a bias takes its share of the relevance in the epsilon and z-plus
rules) and batch norms are made bias-free after the merge (``beta = mean * scale``) while keeping non-trivial scales
and means; the rules' stabilizers are set to 1e-12; float64 throughout. Then the error is at rounding level (we
assert 1e-9 relative), and a wrong preprocessing rule, a batch norm merged into the unit's own layer, or a merge that
changes the function shows up as an error of 1e-6 or more.

The face-api nets (trained weights, biases zeroed, the folded batch norms' ``Scale`` biases too) need the weights
(``INTERP_DATA_DIR``; a skip without them, a failure in CI). The z-plus rule drops the relevance of an output with no
positive contribution; that never happens in the recognition net, but it does in the expression net's pointwise
convolutions, whose outputs enter the dense sums before any ReLU: there the default composite conserves to about 1e-4
and exact conservation is checked with the epsilon rule on every convolution.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch
import torchvision
from torch import nn

from interp.models.cnn import MnistCNN
from interp.models.faceapi import FaceApiPreprocess, FaceExpressionNet, FaceRecognitionNet, Scale
from interp.models.mlp import MNIST_STD, MnistMLP
from interp.models.normalized import Normalized
from interp.models.vggface2 import CaffePreprocess, VGGFace2ResNet50
from interp.optvis.attribution import neuron_attributions
from interp.optvis.lrp import batchnorm_merges, canonizers_for, lrp_attributions
from interp.optvis.scores import unit_values

torch.set_num_threads(2)

EXACT = {"epsilon": 1e-12, "stabilizer": 1e-12}


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def zero_biases(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, Scale)) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


def bias_free_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random positive scales and non-zero means, with ``beta = mean * scale``: the merged bias is zero."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(m.running_mean * m.weight / (m.running_var + m.eps).sqrt())
    return model


def conservation_error(model, layer, units, x, **kwargs) -> torch.Tensor:
    """``|sum(R) - value| / max(1, |value|)`` per unit and input."""
    maps = lrp_attributions(model, layer, units, x, **kwargs)
    assert maps.shape == (len(units), *x.shape)
    value = unit_values(model, layer, units, x).T
    return (maps.flatten(2).sum(-1) - value).abs() / value.abs().clamp(min=1)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_restored(model: nn.Module, before: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert torch.equal(model(x), y)
    for m in model.modules():
        assert not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks), m
        assert "forward" not in m.__dict__
        assert not any(hasattr(m, key) for key in ("canonizer_sum", "canonizer_sum2", "canonizer_sum3")), m
        if isinstance(m, nn.BatchNorm2d):
            assert m.eps == 1e-5


def manual_lrp_mlp(model: MnistMLP, x: torch.Tensor, unit: int, eps: float) -> torch.Tensor:
    """EpsilonPlusFlat on the MLP by hand: epsilon at dense_3 and dense_2, flat at dense_1 (the first layer),
    ReLU and the normalization pass through."""
    a0 = model.flatten(model.normalize(x))
    a1 = model.relu_1(model.dense_1(a0))
    a2 = model.relu_2(model.dense_2(a1))
    z3 = model.dense_3(a2)
    r3 = torch.zeros_like(z3)
    r3[:, unit] = z3[:, unit]

    def epsilon(a, layer, r):
        z = layer(a)
        return a * ((r / (z + eps * torch.where(z >= 0, 1.0, -1.0))) @ layer.weight)

    r1 = epsilon(a1, model.dense_2, epsilon(a2, model.dense_3, r3))
    flat = r1.sum(1, keepdim=True) / a0.shape[1]  # every input of dense_1 gets an equal share of each output
    return flat.expand_as(a0).reshape(x.shape)


def test_mlp_conserves_and_matches_the_rules_by_hand():
    torch.manual_seed(0)
    model = zero_biases(MnistMLP(hidden=64).eval())
    x = torch.rand(4, 1, 28, 28)
    for layer, units in [("dense_3", [0, 7]), ("dense_2", [3, 11]), ("dense_1", [5])]:
        assert conservation_error(model, layer, units, x, **EXACT).max() < 1e-9, layer
    ours = lrp_attributions(model, "dense_3", 7, x, **EXACT)
    torch.testing.assert_close(ours, manual_lrp_mlp(model, x, 7, 1e-12), rtol=1e-9, atol=1e-12)
    # Zennit's default stabilizers (1e-6) cost little
    assert conservation_error(model, "dense_3", [0, 7], x).max() < 1e-4
    # without the pass-through rule the gradient of the normalization scales the relevance by 1 / std
    plain = lrp_attributions(model, "dense_3", [7], x, preprocessing=(), **EXACT)
    value = unit_values(model, "dense_3", [7], x).T
    std = model.normalize.std.item()  # MNIST_STD as stored (float32)
    assert std == pytest.approx(MNIST_STD)
    torch.testing.assert_close(plain.flatten(2).sum(-1) * std, value, rtol=1e-9, atol=1e-12)
    # with its (random) biases the MLP does not conserve: the biases take their share
    biased = MnistMLP(hidden=64).eval()
    assert conservation_error(biased, "dense_3", [0, 7], x, **EXACT).max() > 1e-3
    # through neuron_attributions
    torch.testing.assert_close(neuron_attributions(model, "dense_3", 7, x, method="lrp").maps, ours, rtol=0, atol=1e-6)


def test_cnn_with_batchnorm_after_the_pool_conserves():
    torch.manual_seed(0)
    model = bias_free_batchnorms(zero_biases(MnistCNN(channels=(8, 16), hidden=32).eval()))
    x = torch.rand(3, 1, 28, 28)
    # conv -> pool -> bn: merged across the max pool, and only below the unit's layer
    assert batchnorm_merges(model, "fc2", x) == [("conv1", "bn1"), ("conv2", "bn2")]
    assert batchnorm_merges(model, "conv2", x) == [("conv1", "bn1")]
    before, y = snapshot(model), model(x)
    for layer, units in [("fc2", [0, 3]), ("fc1", [2]), ("conv2", [1, 5]), ("relu1", [4])]:
        assert conservation_error(model, layer, units, x, **EXACT).max() < 1e-9, layer
    for reduce, stat in [("sum", lambda c: c.sum((1, 2))), ("max", lambda c: c.amax((1, 2)))]:
        maps = lrp_attributions(model, "conv2", [5], x, reduce=reduce, **EXACT)
        with torch.no_grad():
            channel = model.conv2(model.relu1(model.bn1(model.pool1(model.conv1(model.normalize(x))))))[:, 5]
        torch.testing.assert_close(maps.flatten(2).sum(-1)[0], stat(channel), rtol=1e-9, atol=1e-12)
    assert_restored(model, before, x, y)


def test_canonizers_keep_the_function_and_restore_the_model():
    import zennit.core

    torch.manual_seed(0)
    model = bias_free_batchnorms(MnistCNN(channels=(8, 16), hidden=32).eval(), seed=1)
    model.bn1.bias.data.add_(0.3)  # a merged bias of its own, for the function check
    x = torch.rand(3, 1, 28, 28)
    before, y = snapshot(model), model(x)
    composite = zennit.core.Composite(canonizers=canonizers_for(model, "fc2", x))
    with composite.context(model):
        assert torch.equal(model.bn1.weight, torch.ones(8)) and model.bn1.eps == 0  # an exact identity now
        assert model.conv1.bias is not None
        torch.testing.assert_close(model(x), y, rtol=1e-12, atol=1e-12)
    assert model.conv1.bias is None
    assert_restored(model, before, x, y)
    # a negative scale after a max pool cannot be merged: warned, left as is (it passes relevance through)
    model.bn1.weight.data[0] = -0.5
    with pytest.warns(UserWarning, match="non-positive scales"):
        assert batchnorm_merges(model, "fc2", x) == [("conv2", "bn2")]
    zero_biases(model)
    with pytest.warns(UserWarning):
        assert conservation_error(model, "conv2", [1], x, **EXACT).max() < 1e-9


def test_resnet18_conserves_and_is_restored():
    torch.manual_seed(0)
    model = bias_free_batchnorms(zero_biases(torchvision.models.resnet18(num_classes=10).eval()))
    x = torch.rand(2, 3, 32, 32)
    before, y = snapshot(model), model(x)
    for layer, units in [("fc", [0, 3]), ("layer3", [1, 7]), ("layer1.0.conv2", [2])]:
        error = conservation_error(model, layer, units, x, **EXACT)
        assert error.max() < 1e-9, (layer, error)
    assert_restored(model, before, x, y)
    # the same through the Normalized wrapper (layer names gain "model."), on the normalized pixels
    wrapped = Normalized.imagenet(model)
    assert conservation_error(wrapped, "model.layer3", [1], x, **EXACT).max() < 1e-9


def test_face_resnet50_with_caffe_preprocessing_conserves():
    torch.manual_seed(0)
    model = bias_free_batchnorms(VGGFace2ResNet50(num_classes=10).eval())
    x = torch.rand(1, 3, 40, 40)
    before, y = snapshot(model), model(x)
    assert conservation_error(model, "layer2", [1, 5], x, **EXACT).max() < 1e-9
    assert_restored(model, before, x, y)


def test_caffe_preprocessing_routes_relevance_to_the_rgb_channel():
    """BGR order: the network's channel 0 is the input's blue channel (2): its relevance goes back there (z-plus on
    the first layer: the flat rule would spread relevance over every channel whatever the weights)."""
    net = nn.Sequential(CaffePreprocess("BGR"), nn.Conv2d(3, 1, 1, bias=False), nn.Conv2d(1, 2, 1, bias=False))
    nn.init.constant_(net[1].weight, 0.0)
    net[1].weight.data[0, 0] = 1.0
    x = torch.rand(2, 3, 5, 5)
    maps = lrp_attributions(net.eval(), "2", [0], x, composite="epsilon_plus", **EXACT)[0]
    assert maps[:, :2].abs().max() == 0 and maps[:, 2].abs().sum() > 0


def test_face_api_resize_shares_relevance_by_the_bilinear_weights():
    """A square input resized to the net's size: each resized pixel's relevance goes to its source pixels by the
    interpolation weights (they sum to one), so the total is kept; at the net's size it passes through unscaled."""
    torch.manual_seed(0)
    convs = nn.Conv2d(3, 4, 3, bias=False), nn.Conv2d(4, 2, 1, bias=False)
    for conv in convs:
        conv.weight.data.abs_()  # every output has a positive contribution: z-plus conserves
    net = nn.Sequential(FaceApiPreprocess(8), convs[0], nn.ReLU(), convs[1])
    for size in (5, 8, 13):
        x = torch.rand(2, 3, size, size)
        error = conservation_error(net.eval(), "3", [0, 1], x, composite="epsilon_plus", **EXACT)
        assert error.max() < 1e-9, (size, error)


def relative_error(model, layer, units, x, **kwargs) -> torch.Tensor:
    """``|sum(R) - value| / |value|`` per unit and input."""
    maps = lrp_attributions(model, layer, units, x, **kwargs)
    value = unit_values(model, layer, units, x).T
    return (maps.flatten(2).sum(-1) - value).abs() / value.abs()


def test_face_recognition_net_conserves_and_is_restored(faceapi_dir):
    """Scales folded into their convolutions, the residual sums (zero-padded average-pool shortcuts included) as
    Sum modules, the preprocessing passed through: conservation to rounding at a middle stage and at the output."""
    model = zero_biases(FaceRecognitionNet.from_weights(faceapi_dir).double())
    torch.manual_seed(0)
    x = torch.rand(2, 3, 150, 150)
    merges = batchnorm_merges(model, "layer2", x)
    assert ("stem.conv", "stem.scale") in merges and ("layer2.0.conv2.conv", "layer2.0.conv2.scale") in merges
    assert all(bn.endswith(".scale") for _, bn in merges) and len(merges) == 15
    # a Scale after the unit's own conv is not folded into it
    assert ("layer2.0.conv1.conv", "layer2.0.conv1.scale") not in batchnorm_merges(model, "layer2.0.conv1.conv", x)
    before, y = snapshot(model), model(x)
    for layer, units in [("layer2", [5, 40]), ("fc", [0, 77])]:
        error = relative_error(model, layer, units, x, **EXACT)
        assert error.max() < 1e-9, (layer, error)
    assert_restored(model, before, x, y)
    # a smaller square face crop, resized to 150 px by the preprocessing: still conserved
    error = relative_error(model, "fc", [0], torch.rand(1, 3, 120, 120), **EXACT)
    assert error.max() < 1e-9, error


def _epsilon_composite(model: nn.Module, layer: str, x: torch.Tensor):
    """EpsilonPlusFlat with the epsilon rule on every convolution too (conserving wherever no denominator is 0)."""
    from zennit.composites import SpecialFirstLayerMapComposite
    from zennit.layer import Sum
    from zennit.rules import Epsilon, Flat, Norm, Pass
    from zennit.types import Activation, AvgPool, Convolution, Linear

    layer_map = [
        (Activation, Pass()),
        (Sum, Norm(stabilizer=1e-12)),
        (AvgPool, Norm(stabilizer=1e-12)),
        (Convolution, Epsilon(epsilon=1e-12)),
        (Linear, Epsilon(epsilon=1e-12)),
    ]
    first_map = [(Linear, Flat(stabilizer=1e-12)), (Convolution, Flat(stabilizer=1e-12))]
    return SpecialFirstLayerMapComposite(layer_map, first_map, canonizers=canonizers_for(model, layer, x))


def test_face_expression_net_conserves_and_is_restored(faceapi_dir):
    """Dense sums as Sum modules (three per block), depthwise convolutions with the epsilon rule: exact conservation
    with epsilon on every convolution; the default composite's z-plus on the pointwise convolutions drops a little."""
    model = zero_biases(FaceExpressionNet.from_weights(faceapi_dir).double())
    torch.manual_seed(0)
    x = torch.rand(2, 3, 112, 112)
    before, y = snapshot(model), model(x)
    for layer, units in [("dense2", [3, 10]), ("fc", [1, 4])]:
        error = relative_error(model, layer, units, x, composite=_epsilon_composite(model, layer, x))
        assert error.max() < 1e-9, (layer, error)
        assert relative_error(model, layer, units, x, **EXACT).max() < 1e-3, layer
    assert_restored(model, before, x, y)


def test_face_api_canonizers_keep_the_function(faceapi_dir):
    """With their own biases: the Scale folds (bias ``b_conv * w + b``), the Sum forwards and the depthwise rule change
    nothing in the function; everything is put back bitwise."""
    import zennit.core

    torch.manual_seed(0)
    nets: list[tuple[nn.Module, int]] = [
        (FaceRecognitionNet.from_weights(faceapi_dir), 150),
        (FaceExpressionNet.from_weights(faceapi_dir), 112),
    ]
    for model, size in nets:
        model = model.double()
        x = torch.rand(2, 3, size, size)
        before, y = snapshot(model), model(x)
        with zennit.core.Composite(canonizers=canonizers_for(model, "fc", x)).context(model):
            torch.testing.assert_close(model(x), y, rtol=1e-10, atol=1e-10)
            if isinstance(model, FaceRecognitionNet):
                assert torch.equal(model.layer2[0].conv1.scale.weight, torch.ones(64))
        lrp_attributions(model, "fc", [0], x)
        assert_restored(model, before, x, y)
