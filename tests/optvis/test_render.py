"""interp.optvis: capture, objectives, parameterizations, transforms, render, dream, invert."""

import pytest
import torch
from torch import nn

from helpers import Boom
from interp.optvis import Capture, dream, dream_gradient, frozen, get_layer, invert, param, render, render_units
from interp.optvis import objectives as obj
from interp.optvis import transforms as T


class SmallCNN(nn.Module):
    def __init__(self, inplace=True):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def count_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


# --- layer capture -------------------------------------------------------------------------------


def test_unknown_layer_lists_close_names():
    model = SmallCNN()
    with pytest.raises(ValueError, match=r"conv1.*layer_names"):
        get_layer(model, "conv_1")


def test_capture_clones_against_inplace_relu():
    model = SmallCNN(inplace=True)
    x = torch.randn(2, 3, 8, 8)
    with Capture(model, "conv1", stop=False) as cap:
        acts = cap(x)["conv1"]
    expected = model.conv1(x)
    assert (expected < 0).any()
    torch.testing.assert_close(acts, expected, rtol=0, atol=0)


def test_capture_stops_after_deepest_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3), Boom())
    with Capture(model, ["0", "2"]) as cap:
        acts = cap(torch.randn(2, 4))
    assert set(acts) == {"0", "2"} and acts["2"].shape == (2, 3)
    with pytest.raises(AssertionError, match="after the hooked layer"):
        with Capture(model, ["2"], stop=False) as cap:
            cap(torch.randn(2, 4))


def test_hooks_removed_after_many_renders_and_on_error():
    model = SmallCNN()
    for _ in range(100):
        render(model, obj.channel("conv2", 1), shape=(3, 8, 8), steps=1, transforms=None)
    assert count_hooks(model) == 0
    with pytest.raises(IndexError):
        render(model, obj.channel("conv2", 99), shape=(3, 8, 8), steps=1)
    assert count_hooks(model) == 0


def test_render_restores_requires_grad_and_mode():
    model = SmallCNN()
    model.conv1.weight.requires_grad_(False)
    model.train()
    seen = []
    model.conv2.register_forward_hook(lambda m, i, o: seen.append(m.weight.requires_grad))
    render(model, obj.channel("conv2", 0), shape=(3, 8, 8), steps=2, transforms=None)
    assert seen and not any(seen), "weights must not require grad while rendering"
    assert model.training
    assert model.conv2.weight.requires_grad and not model.conv1.weight.requires_grad
    assert model.conv2.weight.grad is None


# --- objectives -----------------------------------------------------------------------------------


def test_objectives_combine_and_bind():
    a = {"l": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}
    o = obj.unit("l", 1) + 2 * obj.unit("l", 2) - obj.unit("l", 0)
    torch.testing.assert_close(o(a), torch.tensor([2 + 6 - 1, 5 + 12 - 4.0]))
    torch.testing.assert_close(obj.unit("l", [0, 2])(a), torch.tensor([1.0, 6.0]))
    torch.testing.assert_close(obj.unit("l", 2, batch=1)(a), torch.tensor([0.0, 6.0]))
    torch.testing.assert_close(sum([obj.unit("l", 0), obj.unit("l", 1)])(a), torch.tensor([3.0, 9.0]))
    conv = {"c": torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).reshape(2, 2, 3, 3)}
    torch.testing.assert_close(obj.unit("c", 1)(conv), conv["c"][:, 1, 1, 1])
    torch.testing.assert_close(obj.channel("c", 1)(conv), conv["c"][:, 1].mean((1, 2)))
    torch.testing.assert_close(obj.layer_l2("c")(conv), conv["c"].pow(2).sum((1, 2, 3)))
    v = torch.tensor([1.0, -1.0])
    torch.testing.assert_close(obj.direction("c", v)(conv), (conv["c"][:, 0] - conv["c"][:, 1]).mean((1, 2)))
    div = obj.diversity("c")(conv)
    assert div.shape == (2,) and (div <= 0).all()


def test_regularizers():
    flat = {obj.INPUT: torch.full((1, 1, 4, 4), 0.5)}
    noisy = {obj.INPUT: torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))}
    for reg in (obj.total_variation(), obj.alpha_norm(6)):
        assert float(reg(flat)) < 1e-6 < float(reg(noisy))
    assert float(obj.l1(0.5)(flat)) == 0.0 and float(obj.l2()(flat)) == pytest.approx(0.5)


# --- parameterizations and transforms ---------------------------------------------------------------


@pytest.mark.parametrize("fft", [True, False])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_param_shapes_and_range(fft, channels):
    p = param.image((5, channels, 17, 20), fft=fft)
    x = p()
    assert x.shape == (5, channels, 17, 20) and x.min() >= 0 and x.max() <= 1
    assert (p.color is not None) == (channels == 3)
    q = param.image((5, channels, 17, 20), fft=fft, seed=1)
    q.load_state_dict(p.state_dict())
    torch.testing.assert_close(q(), x)
    assert p.to(torch.float64)().dtype == torch.float64


def test_color_matrix_from_data_whitens():
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 1.0]])
    raw = torch.randn(64, 3, 8, 8, generator=g)
    data = [torch.einsum("ij,bjhw->bihw", mix, raw[i : i + 16]) for i in range(0, 64, 16)]
    sqrt = param.color_matrix_from_data(data)
    cov = sqrt @ sqrt.T
    torch.testing.assert_close(cov, mix @ mix.T, atol=0.05, rtol=0.05)


def test_transforms_reproducible_with_seed():
    x = torch.rand(2, 3, 32, 32)
    t = T.standard_transforms()
    a = t(x, torch.Generator().manual_seed(3))
    b = t(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    small = T.small_image_transforms((28, 28))
    for seed in range(20):
        assert small(torch.rand(1, 1, 28, 28), torch.Generator().manual_seed(seed)).shape == (1, 1, 28, 28)


def test_render_same_seed_bitwise_equal():
    model = SmallCNN()
    r1 = render(model, obj.channel("conv2", 2), shape=(3, 32, 32), steps=5, seed=7)
    r2 = render(model, obj.channel("conv2", 2), shape=(3, 32, 32), steps=5, seed=7)
    r3 = render(model, obj.channel("conv2", 2), shape=(3, 32, 32), steps=5, seed=8)
    assert torch.equal(r1.image, r2.image) and torch.equal(r1.history, r2.history)
    assert not torch.equal(r1.image, r3.image)


# --- unit optimization ---------------------------------------------------------------------------------


def test_render_units_beats_training_max(trained_mlp, mnist_small):
    x, _ = mnist_small
    model = trained_mlp
    with torch.no_grad():
        dataset_max = model.dense_1(model.flatten(model.normalize(x))).max(0).values
    units = list(range(0, 64, 2))
    result = render_units(model, "dense_1", units, steps=256, thresholds=[64, 256])
    assert result.image.shape == (32, 1, 28, 28) and len(result.images) == 2
    reached = (result.scores >= dataset_max[units]).float().mean()
    assert reached >= 0.9, f"only {reached:.0%} of units reached their training max"
    assert (result.history[-1] > result.history[0]).all()


def test_render_thresholds_and_errors():
    model = SmallCNN()
    r = render(model, obj.channel("conv2", 0), shape=(3, 16, 16), steps=6, thresholds=[2, 4, 6], transforms=None)
    assert r.thresholds == [2, 4, 6] and len(r.images) == 3 and r.history.shape == (6, 1)
    with pytest.raises(IndexError, match="has 16 units"):
        render(model, obj.unit("conv2", 16), shape=(3, 16, 16), steps=1)
    with pytest.raises(ValueError, match="unknown layer"):
        render(model, obj.unit("conv9", 0), shape=(3, 16, 16), steps=1)
    with pytest.raises(FloatingPointError, match="lower lr"):
        render(model, obj.channel("conv2", 0) * float("nan"), shape=(3, 16, 16), steps=1)
    with pytest.raises(ValueError, match="shape"):
        render(model, obj.channel("conv2", 0), steps=1)


def test_wrong_input_shape_names_expected(trained_mlp):
    with pytest.raises(ValueError, match=r"expected \(N, 1, 28, 28\)"):
        render(trained_mlp, obj.unit("dense_1", 0), shape=(1, 20, 20), steps=1, transforms=None)


def test_gradient_and_activation_agree_with_captum(trained_mlp, mnist_small):
    from captum.attr import LayerActivation, NeuronGradient

    model = trained_mlp
    x = mnist_small[0][:16].clone()
    with frozen(model), Capture(model, "dense_1") as cap:
        inp = x.clone().requires_grad_(True)
        score = obj.unit("dense_1", 32)(cap(inp))
        (ours,) = torch.autograd.grad(score.sum(), inp)
        acts = cap(x)["dense_1"].detach()
    theirs = NeuronGradient(model, model.dense_1).attribute(x, neuron_selector=32)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    torch.testing.assert_close(acts, LayerActivation(model, model.dense_1).attribute(x), atol=1e-6, rtol=0)


# --- DeepDream -------------------------------------------------------------------------------------------


def _dream_model():
    """A small conv net whose first layer holds zero-mean (edge-like) filters, as trained nets do."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2, bias=False),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False),
        nn.ReLU(),
        Boom(),
    )
    with torch.no_grad():
        model[0].weight -= model[0].weight.mean((2, 3), keepdim=True)
    return model


def _smooth_image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(1, h // 8), max(1, w // 8), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")[0] * 0.5 + 0.25


def test_dream_raises_layer_norm_threefold():
    model = _dream_model()
    img = _smooth_image(64, 64)
    out = dream(model, img, "4", octaves=3, steps_per_octave=10, roll=8)
    with torch.no_grad(), Capture(model, "4") as cap:
        before = cap(img[None])["4"].norm()
        after = cap(out.image)["4"].norm()
    assert after >= 3 * before, f"L2 norm only x{after / before:.2f}"
    assert out.image.shape == (1, 3, 64, 64) and out.image.min() >= 0 and out.image.max() <= 1
    assert len(out.octaves) == 3 and out.history.shape == (30, 1)


def test_tiled_gradient_equals_untiled_on_one_tile():
    model = _dream_model()
    x = torch.rand(1, 3, 48, 40)
    with frozen(model), Capture(model, "2") as cap:
        g_one, s_one = dream_gradient(cap, obj.layer_l2("2"), x, tile_size=64)
        xr = x.clone().requires_grad_(True)
        (g_ref,) = torch.autograd.grad(obj.layer_l2("2")(cap(xr)).sum(), xr)
        # 1x1 convs only see their own pixel: tiling such a net must not change the gradient at all.
        pointwise = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1))
        with frozen(pointwise), Capture(pointwise, "2") as cap2:
            g_tiled, _ = dream_gradient(cap2, obj.layer_l2("2"), x, tile_size=16)
            g_whole, _ = dream_gradient(cap2, obj.layer_l2("2"), x, tile_size=64)
    torch.testing.assert_close(g_one, g_ref)
    torch.testing.assert_close(g_tiled, g_whole, atol=1e-6, rtol=1e-5)


def test_dream_large_image_in_tiles_has_no_seams():
    model = _dream_model()
    img = torch.full((3, 1536, 2048), 0.5) + 0.1 * torch.rand(3, 1536, 2048, generator=torch.Generator().manual_seed(0))
    out = dream(model, img, "2", octaves=1, steps_per_octave=2, tile_size=512, roll=32)
    change = (out.image[0] - img).abs().mean(0)
    assert out.image.shape == (1, 3, 1536, 2048)
    # Tile borders (every 512 px) must not stand out: compare the change along border columns to
    # the change along ordinary columns.
    border = change[:, [511, 512, 1023, 1024, 1535, 1536]].mean()
    inner = change[:, [200, 300, 700, 800, 1200, 1300]].mean()
    assert 0.5 < float(border / inner) < 2.0


# --- inversion ---------------------------------------------------------------------------------------------


def test_inversion_of_dense_1(trained_mlp, mnist_small):
    x = mnist_small[0][:4]
    result = invert(trained_mlp, "dense_1", x, steps=300)
    assert result.image.shape == x.shape
    assert (result.error <= 0.05).all(), result.error
    start = result.history[0]
    assert (result.history[-1] < start).all()
