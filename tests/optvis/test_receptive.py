"""interp.optvis.receptive: receptive fields computed (analytic) vs measured (gradient footprints), on small
convnets, the project's CNN and graphs that are not chains; the boxes and crops they give."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interp.models.cnn import MnistCNN
from interp.optvis.receptive import (
    ReceptiveField,
    box_for,
    crop,
    crop_field,
    measure_footprint,
    receptive_field,
)


def _positions(oh, ow):
    """Corners, edges' middles and the middle of an output map."""
    rows, cols = sorted({0, oh // 2, oh - 1}), sorted({0, ow // 2, ow - 1})
    return [(i, j) for i in rows for j in cols]


# Small convnets: stride 2, padding 1 and 0, dilation 2, max and average pooling, ceil_mode.
CHAINS = {
    "stride2_pad1_then_dilated": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, dilation=2),
        nn.ReLU(),
        nn.Conv2d(4, 2, 2, stride=2),
    ),
    "bn_maxpool_stride2_avgpool": lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.5),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(3, stride=1, padding=1),
    ),
    "valid5_dilated_pool_ceil": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 5),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Tanh(),
        nn.Conv2d(3, 3, 3, stride=2, dilation=2),
        nn.LeakyReLU(),
        nn.MaxPool2d(2, stride=1, dilation=2),
    ),
    "rect_kernels_same": lambda: nn.Sequential(
        nn.Conv2d(1, 2, (3, 5), stride=(1, 2), padding=(1, 2)),
        nn.GELU(),
        nn.Conv2d(2, 2, 3, padding="same"),
        nn.MaxPool2d((2, 3)),
    ),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_analytic_field_matches_gradient_footprint(name):
    torch.manual_seed(0)
    net = CHAINS[name]()
    shape = (next(net.parameters()).shape[1], 27, 30)
    for layer, module in net.named_children():
        if not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            continue
        rf = receptive_field(net, layer, shape)
        assert rf.method == "analytic", layer
        assert rf.input_hw == (27, 30)
        for pos in _positions(*rf.output_hw):
            assert box_for(rf, pos, (27, 30)) == measure_footprint(net, layer, shape, pos), (layer, pos, rf)
        measured = receptive_field(net, layer, shape, method="gradient")
        assert measured.method == "gradient"
        if measured.output_hw[0] >= 3 and measured.output_hw[1] >= 3:
            assert (measured.size, measured.stride, measured.start) == (rf.size, rf.stride, rf.start), layer


def test_dilated_padding_gap_box_contains_footprint():
    # taps at -1, 1, 3: pixel 0 is skipped at the border, so the box is one pixel larger there
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, dilation=2))
    rf = receptive_field(net, "0", (1, 10, 10))
    assert box_for(rf, (0, 0)) == (0, 0, 4, 4)
    assert measure_footprint(net, "0", (1, 10, 10), (0, 0)) == (1, 1, 4, 4)
    assert box_for(rf, (5, 5)) == measure_footprint(net, "0", (1, 10, 10), (5, 5)) == (4, 4, 9, 9)


def test_known_values():
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1),
        nn.MaxPool2d(2),
        nn.Conv2d(1, 1, 3, stride=2, padding=1),
        nn.Conv2d(1, 1, 3, dilation=2),
    )
    rf = receptive_field(net, "0", (1, 32, 32))
    assert (rf.size, rf.stride, rf.start, rf.output_hw) == ((3, 3), (1, 1), (-1, -1), (32, 32))
    rf = receptive_field(net, "1", (1, 32, 32))
    assert (rf.size, rf.stride, rf.start) == ((4, 4), (2, 2), (-1, -1))
    rf = receptive_field(net, "2", (1, 32, 32))
    assert (rf.size, rf.stride, rf.start) == ((8, 8), (4, 4), (-3, -3))
    rf = receptive_field(net, "3", (1, 32, 32))
    assert (rf.size, rf.stride, rf.start, rf.output_hw) == ((24, 24), (4, 4), (-3, -3), (4, 4))
    assert box_for(rf, (0, 0)) == (0, 0, 21, 21)
    assert box_for(rf, (3, 3)) == (9, 9, 32, 32)  # clipped at the bottom/right border
    assert box_for(rf, (3, 3), clip=False) == (9, 9, 33, 33)
    with pytest.raises(ValueError, match="outside"):
        box_for(rf, (4, 0))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4 * 10 * 10, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = x + self.b(F.relu(self.a(x)))  # not a chain: the skip and the functional ReLUs
        x = self.down(x)
        return self.head(x.flatten(1))


def test_non_chain_is_measured():
    torch.manual_seed(0)
    net = Residual()
    rf = receptive_field(net, "down", (1, 20, 20))
    assert rf.method == "gradient"
    # stem + a + b: 7x7 (the skip path is inside), then a 3x3 stride-2 conv
    assert (rf.size, rf.stride, rf.start, rf.output_hw) == ((9, 9), (2, 2), (-4, -4), (10, 10))
    for pos in _positions(10, 10):
        assert box_for(rf, pos) == measure_footprint(net, "down", (1, 20, 20), pos)
    with pytest.raises(ValueError, match="not a simple chain"):
        receptive_field(net, "down", (1, 20, 20), method="analytic")
    # a layer without spatial axes sees everything
    dense = receptive_field(net, "head", (1, 20, 20))
    assert dense.method == "dense" and box_for(dense, (0, 0)) == (0, 0, 20, 20)


def test_model_itself_footprint_is_inside_the_field():
    torch.manual_seed(0)
    net = CHAINS["bn_maxpool_stride2_avgpool"]()
    net[1].running_mean.fill_(0.5)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rf = receptive_field(net, "5", (2, 24, 24))
    for pos in _positions(*rf.output_hw):
        t, lf, b, r = measure_footprint(net, "5", (2, 24, 24), pos, positive=False)
        T, L, B, R = box_for(rf, pos)
        assert T <= t < b <= B and L <= lf < r <= R
    measure_footprint(net, "5", (2, 24, 24))
    receptive_field(net, "5", (2, 24, 24), method="gradient")
    assert net.training and all(p.requires_grad for p in net.parameters())  # left as it was
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k  # batch-norm statistics untouched, no weight changed
    with pytest.raises(ValueError, match="outside"):
        measure_footprint(net, "5", (2, 24, 24), (6, 0))


def test_footprint_of_one_channel_and_default_position():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1, groups=2))
    assert measure_footprint(net, "1", (1, 9, 9), channel=1) == (3, 3, 6, 6)  # middle of a 7x7 output


def test_mnist_cnn_fields():
    model = MnistCNN(channels=(4, 8), hidden=16)
    assert receptive_field(model, "conv1").size == (5, 5)
    rf = receptive_field(model, "conv2")  # input shape from example_input_array
    assert rf.method == "analytic"  # the Normalize module in front is recognized as pointwise
    assert (rf.size, rf.stride, rf.start, rf.output_hw) == ((14, 14), (2, 2), (0, 0), (8, 8))
    for pos in _positions(8, 8):
        assert box_for(rf, pos) == measure_footprint(model, "conv2", None, pos)
    assert receptive_field(model, "relu2").size == (16, 16)
    assert receptive_field(model, "fc1").method == "dense"
    assert model.training  # left as it was


def test_crop_and_crop_field():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    rf = ReceptiveField(size=(3, 3), stride=(2, 2), start=(-1, -1), input_hw=(6, 6), output_hw=(3, 3))
    boxes = [box_for(rf, (0, 0)), box_for(rf, (1, 2))]
    assert boxes == [(0, 0, 2, 2), (1, 3, 4, 6)]
    a, b = crop(x, boxes)
    assert torch.equal(a, x[0, :, 0:2, 0:2]) and torch.equal(b, x[1, :, 1:4, 3:6])
    patches = crop_field(x, rf, [(0, 0), (2, 2)], fill=-1.0)
    assert patches.shape == (2, 1, 3, 3)
    assert torch.equal(patches[0, 0, 0], torch.tensor([-1.0, -1.0, -1.0]))
    assert torch.equal(patches[0, 0, 1:, 1:], x[0, 0, :2, :2])
    assert torch.equal(patches[1, 0], x[1, 0, 3:, 3:])
    assert torch.equal(crop_field(x[:1], rf, [(1, 0)], fill=-1.0)[0, 0, :, 0], torch.tensor([-1.0, -1.0, -1.0]))
    single = crop(x[0], [(0, 0, 1, 1), (5, 5, 6, 6)])  # one image, several boxes
    assert [p.item() for p in single] == [0.0, 35.0]
    with pytest.raises(ValueError):
        crop(x, [(0, 0, 1, 1)])
