"""Conv channels that read: the ``prototype`` view (top examples aligned at their peak, averaged and
accentuated), the plain view at the peak, and one like-for-like statistic (the spatial max) in
every caption, on a small CNN trained for a few seconds on real digits."""

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from helpers import train_quick
from interp.callbacks import FeatureVisualization, TopKExamples, UnitPanel
from interp.report import Reporter
from interp.steps.featvis import FeatVisSettings, ViewInputs, feature_visualization, render_view
from interp.steps.topk import Examples, mine

LAYER = "conv2"


class SmallCNN(nn.Module):
    """conv1 (3x3) -> ReLU -> pool -> conv2 (3x3) -> ReLU -> pool -> linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.head = nn.Linear(16 * 5 * 5, 10)
        self.example_input_array = torch.zeros(1, 1, 28, 28)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.head(x.flatten(1))


class Recording(Reporter):
    """A reporter that keeps every image description and text instead of writing them."""

    def __init__(self, run_dir):
        super().__init__(run_dir, enabled=False)
        self.descriptions: dict[str, str] = {}
        self.texts: dict[str, str] = {}

    def image(self, tag, img, step=0, description=None):
        self.descriptions[tag] = description or ""
        return None

    def text(self, tag, markdown, step=0):
        self.texts[tag] = markdown


@pytest.fixture(scope="module")
def cnn(mnist_small):
    torch.manual_seed(0)
    x, y = mnist_small
    return train_quick(SmallCNN(), x[:3000], y[:3000], epochs=1)


@pytest.fixture(scope="module")
def data(mnist_small):
    x, y = mnist_small
    return TensorDataset(x[:2000], y[:2000])


@pytest.fixture(scope="module")
def examples(cnn, data):
    return Examples(mine(cnn, LAYER, list(range(16)), 16, data), None, data)


def test_prototype_view_renders_every_unit_above_its_kth_example(cnn, examples, tmp_path):
    torch.set_num_threads(2)
    units = list(range(16))
    reporter = Recording(tmp_path)
    settings = FeatVisSettings(views=("prototype",))
    result = feature_visualization(cnn, reporter, LAYER, units, settings, ViewInputs(examples=examples))
    image = result.renderings["prototype"].image
    assert image.shape == (16, 1, 28, 28) and image.min() >= 0 and image.max() <= 1
    assert result.statistic == "spatial max"
    kth = examples.top.values[:, 15].float()
    reached = result.activations["prototype"]
    assert (reached >= kth).float().mean() >= 0.75, (reached, kth)
    # the ratio is the spatial max over the best example's spatial max
    torch.testing.assert_close(result.ratios["prototype"], reached / examples.top.values[:, 0].float())
    # every caption and the table name the statistic
    caption = reporter.descriptions[f"featvis/{LAYER}/unit_003"]
    assert "activation (spatial max)" in caption and "x the best training example's" in caption, caption
    assert "prototype activation (spatial max)" in reporter.texts[f"featvis/{LAYER}/table"]


def test_prototype_view_is_the_same_bits_in_one_batch_and_split(cnn, examples):
    torch.set_num_threads(2)
    units = [0, 3, 5, 6, 9]
    settings, inputs = FeatVisSettings(shape=(1, 28, 28), seed=0), ViewInputs(examples=examples)
    one = render_view(cnn, LAYER, units, "prototype", settings, inputs)
    split = render_view(cnn, LAYER, units, "prototype", settings.replace(max_batch=3), inputs)  # 3 + 2
    assert one.units == split.units == units
    assert torch.equal(one.image, split.image)
    assert torch.equal(one.activations, split.activations)


def test_peak_plain_view_and_fallbacks(cnn, examples, data, tmp_path):
    """The 28 px plain setting (neuron at the peak, dark start, L1 relative to the k-th best) is
    at least the k-th best example for most channels; without examples the prototype view is
    skipped with one warning and ``kind='peak'`` falls back to the centre; a dense layer gets the
    unshifted mean."""
    torch.set_num_threads(2)
    units = list(range(8))
    reporter = Reporter(tmp_path, enabled=False)
    settings = FeatVisSettings(
        views=("plain",),
        kind="peak",
        plain_param="dark",
        l1_weight=5.0,
        l1_relative=True,
        lr=0.01,
        steps=96,
        transforms=None,
    )
    result = feature_visualization(cnn, reporter, LAYER, units, settings, ViewInputs(examples=examples))
    kth = examples.top.values[:8, 15].float()
    assert (result.activations["plain"] >= kth).float().mean() >= 0.75, (result.activations["plain"], kth)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bare = feature_visualization(
            cnn, reporter, LAYER, [0, 1], FeatVisSettings(views=("plain", "prototype"), kind="peak", steps=4)
        )
    messages = [str(w.message) for w in caught]
    assert sum("prototype view needs" in m for m in messages) == 1, messages
    assert sum("kind='peak' needs" in m for m in messages) == 1, messages
    assert list(bare.renderings) == ["plain"] and bare.statistic == "spatial max" and not bare.ratios
    dense = Examples(mine(cnn, "head", [2, 7], 8, data), None, data)
    flat = feature_visualization(
        cnn, reporter, "head", [2, 7], FeatVisSettings(views=("prototype",)), ViewInputs(examples=dense)
    )
    assert flat.statistic == "" and flat.renderings["prototype"].image.shape == (2, 1, 28, 28)
    assert (flat.activations["prototype"] > dense.top.values[:, 0]).all()


@pytest.mark.parametrize("topk_first", [True, False])
def test_prototype_view_in_either_callback_order(cnn, data, tmp_path, topk_first):
    """Before the top-k, FeatureVisualization mines the examples its views need itself; after it,
    it reuses the top-k's. Either way every unit gets a prototype, a ratio and the panel shows it."""
    torch.set_num_threads(2)
    units = [1, 4, 6]
    topk = TopKExamples(LAYER, units=units, k=16, progress=False, on_error="raise")
    featvis = FeatureVisualization(
        LAYER,
        units=units,
        views=["plain", "prototype"],
        steps=16,
        lr=0.01,
        transforms=None,
        kind="peak",
        plain_param="dark",
        l1_weight=5.0,
        l1_relative=True,
        progress=False,
        on_error="raise",
    )
    assert featvis.needs_data
    order = [topk, featvis] if topk_first else [featvis, topk]
    reporter = Reporter(tmp_path, enabled=False)
    for cb in order:
        cb.apply(cnn, data, reporter, others=order)
    result = featvis.result
    assert result is not None and result.units == units
    assert result.renderings["prototype"].image.shape == (3, 1, 28, 28)
    assert result.ratios["prototype"].shape == (3,) and torch.isfinite(result.ratios["prototype"]).all()
    # the same prototypes whichever ran first (the same examples: the whole data set, k=16)
    again = feature_visualization(
        cnn,
        reporter,
        LAYER,
        units,
        FeatVisSettings(views=("prototype",)),
        ViewInputs(examples=Examples(mine(cnn, LAYER, units, 16, data), None, data)),
    )
    assert torch.equal(again.renderings["prototype"].image, result.renderings["prototype"].image)
    # the panel reuses the rendering and shows the prototype view, captioned with the spatial max
    panel = UnitPanel(
        LAYER,
        units=[4],
        views=["plain", "prototype"],
        steps=16,
        lr=0.01,
        transforms=None,
        kind="peak",
        plain_param="dark",
        l1_weight=5.0,
        l1_relative=True,
        progress=False,
        on_error="raise",
    )
    recording = Recording(tmp_path)
    panel.apply(cnn, data, recording, others=order)
    assert "activation (spatial max)" in recording.descriptions[f"panel/{LAYER}/unit_004"]
