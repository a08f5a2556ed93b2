"""Views of a unit as parameterizations: MaCo (phase only), feature accentuation (from a real
image) and a learned prior's latent space (a cached VAE)."""

import pytest
import torch
from torch import nn

from interp.optvis import Capture, render, render_units
from interp.optvis import objectives as obj
from interp.optvis.accentuate import accentuate, first_layer
from interp.optvis.latent import LatentParam, default_max_norm
from interp.optvis.maco import MacoParam, apply_alpha, maco_alpha, magnitude_from_data, natural_magnitude


class TinyMLP(nn.Module):
    """Flatten -> Linear -> ReLU -> Linear, images [N, 1, 12, 12] in [0, 1]."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.example_input_array = torch.zeros(1, 1, 12, 12)
        self.flatten = nn.Flatten()
        self.dense_1 = nn.Linear(144, 32)
        self.relu_1 = nn.ReLU()
        self.dense_2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.dense_2(self.relu_1(self.dense_1(self.flatten(x))))


def _spectrum(x):
    return torch.fft.rfft2(x.double(), norm="ortho").abs()


# --- MaCo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (1, 3, 15, 16), (3, 2, 16, 9)])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_maco_keeps_the_magnitude_for_any_seed(shape, seed):
    data = torch.rand(6, *shape[1:], generator=torch.Generator().manual_seed(100 + seed))
    magnitude = magnitude_from_data(data, size=shape[-2:])
    p = MacoParam(shape, magnitude, seed=seed)
    x = p.spectral_image()
    assert x.shape == shape and x.dtype == torch.float32
    torch.testing.assert_close(_spectrum(x), magnitude.double().expand(shape[0], -1, -1, -1), atol=2e-5, rtol=1e-4)
    # The phase is what changes with the seed.
    other = MacoParam(shape, magnitude, seed=seed + 1).spectral_image()
    assert (x - other).abs().max() > 1e-2


def test_maco_keeps_the_magnitude_while_optimizing():
    model = TinyMLP()
    magnitude = natural_magnitude((1, 12, 12), decay=1.0)
    p = MacoParam((4, 1, 12, 12), magnitude, seed=3, track_alpha=True)
    before = p().detach().clone()
    result = render_units(model, "dense_1", [0, 1, 2, 3], param=p, steps=40, lr=0.05)
    assert result.image.shape == (4, 1, 12, 12)
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert (result.image - before).abs().max() > 0.05  # the phase moved
    torch.testing.assert_close(
        _spectrum(p.spectral_image().detach()), magnitude.double().expand(4, -1, -1, -1), atol=2e-5, rtol=1e-4
    )
    with Capture(model, "dense_1") as cap, torch.no_grad():
        start = obj.channel("dense_1", [0, 1, 2, 3])(cap(before))
    assert (result.activations > start).all(), (start, result.activations)
    # Transparency: the gradients at the image were accumulated during the 40 steps.
    alpha = maco_alpha(p)
    assert alpha.shape == (4, 1, 12, 12) and alpha.min() >= 0 and alpha.max() == 1
    assert int(p.alpha_steps) == 40
    blended = apply_alpha(result.image, alpha)
    assert blended.shape == result.image.shape and blended.min() >= 0 and blended.max() <= 1


def test_maco_sigmoid_output_and_constants():
    magnitude = natural_magnitude((3, 16, 16), mean=0.4, std=0.1)
    p = MacoParam((2, 3, 16, 16), magnitude, seed=0, output="sigmoid")
    x = p.spectral_image()
    torch.testing.assert_close(x.mean((-2, -1)), torch.full((2, 3), 0.4), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std((-2, -1), unbiased=False), torch.full((2, 3), 0.1), atol=1e-5, rtol=0)
    img = p()
    assert img.shape == (2, 3, 16, 16) and 0 < img.min() and img.max() < 1
    torch.testing.assert_close(img.mean(), torch.tensor(0.5), atol=0.05, rtol=0)


def test_magnitude_from_data_tensor_loader_and_resize():
    x = torch.rand(10, 1, 14, 14)
    from_tensor = magnitude_from_data(x, 14)
    from_loader = magnitude_from_data([(x[:4], None), (x[4:], None)], (14, 14))
    torch.testing.assert_close(from_tensor, from_loader)
    assert magnitude_from_data((x * 255).to(torch.uint8), 14).shape == (1, 14, 8)
    assert magnitude_from_data(x, 8).shape == (1, 8, 5)
    assert magnitude_from_data([(x[:4], None), (x[4:], None)], 14, max_batches=1).shape == (1, 14, 8)
    with pytest.raises(ValueError, match="magnitude must be"):
        MacoParam((1, 1, 28, 28), from_tensor)
    with pytest.raises(ValueError, match="no images"):
        magnitude_from_data([], 14)


def test_maco_follows_the_model_device_and_state_dict():
    p = MacoParam((1, 1, 8, 8), seed=0)
    names = {n for n, _ in p.named_parameters()}
    assert names == {"phase_params"}
    assert "magnitude" in p.state_dict()


# --- feature accentuation ------------------------------------------------------------------------


def test_first_layer():
    from interp.models import MnistMLP

    assert first_layer(MnistMLP()) == "normalize"
    assert first_layer(TinyMLP()) == "flatten"


def test_accentuation_raises_the_objective_and_stays_close(trained_mlp, mnist_small):
    torch.manual_seed(0)
    digits = mnist_small[0][:3]
    objective = obj.channel("dense_1", [3, 7, 32])
    acc = accentuate(trained_mlp, objective, digits, steps=100)
    assert acc.reg_layer == "normalize"
    assert acc.image.shape == digits.shape and acc.image.min() >= 0 and acc.image.max() <= 1
    torch.testing.assert_close(acc.seed_images, digits)
    assert (acc.scores > acc.seed_scores + 2.0).all(), (acc.seed_scores, acc.scores)
    plain = render(trained_mlp, objective, shape=(3, 1, 28, 28), steps=100)
    pixel = lambda x: (x - digits).pow(2).flatten(1).mean(1).sqrt()
    assert (pixel(acc.image) < pixel(plain.image)).all(), (pixel(acc.image), pixel(plain.image))
    # A stronger hold stays closer to the seed (pixels), at a lower objective.
    tight = accentuate(trained_mlp, objective, digits, steps=100, reg_layer=None, reg_weight=1000.0)
    assert tight.reg_layer == "input"
    assert (pixel(tight.image) < pixel(acc.image)).all()
    assert (tight.scores > tight.seed_scores).all()


def test_accentuation_on_a_random_model_without_data():
    model = TinyMLP()
    images = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    acc = accentuate(
        model,
        obj.channel("dense_1", [5, 9]),
        images,
        steps=30,
        reg_layer="dense_1",
        reg_weight=1.0,
        thresholds=[10, 30],
    )
    assert len(acc.images) == 2 and acc.history.shape == (30, 2)
    assert (acc.scores > acc.seed_scores).all()
    assert acc.distances.shape == (2,) and (acc.distances > 0).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        accentuate(model, obj.channel("dense_1", 0), images * 3, steps=1)


# --- learned prior and its latent space ----------------------------------------------------------


def _digits_or_noise(mnist_root_available):
    if mnist_root_available is not None:
        from interp.data import load_mnist

        return load_mnist(mnist_root_available, train=True, download=False)[0][:2048]
    g = torch.Generator().manual_seed(0)
    return (torch.rand(2048, 1, 28, 28, generator=g) * 255).to(torch.uint8)


@pytest.fixture(scope="module")
def small_images():
    from conftest import _mnist_root

    return _digits_or_noise(_mnist_root())


PRIOR = dict(max_epochs=3, batch_size=128)  # 48 steps: a few seconds


@pytest.fixture(scope="module")
def small_prior(small_images, tmp_path_factory):
    from interp.models.prior import train_prior

    return train_prior(small_images, seed=0, cache_dir=tmp_path_factory.mktemp("prior"), **PRIOR)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_prior_is_reproducible_and_cached(small_images, small_prior, tmp_path):
    from interp.models.prior import ImagePrior, train_prior

    assert isinstance(small_prior, ImagePrior) and not small_prior.from_cache
    assert small_prior.cache_path.exists()
    # Same seed, another cache: trained again, same weights.
    again = train_prior(small_images, seed=0, cache_dir=tmp_path, **PRIOR)
    assert not again.from_cache and _same_weights(again, small_prior)
    # Same data and settings: loaded, not trained.
    loaded = train_prior(small_images.clone(), seed=0, cache_dir=tmp_path, **PRIOR)
    assert loaded.from_cache and loaded.cache_path == again.cache_path and _same_weights(loaded, again)
    assert not loaded.training
    # Another seed or other data: another file and other weights.
    other = train_prior(small_images, seed=1, cache_dir=tmp_path, **PRIOR)
    assert not other.from_cache and other.cache_path != again.cache_path and not _same_weights(other, again)
    changed = small_images.clone()
    changed[0] = 255 - changed[0]
    assert train_prior(changed, seed=0, max_epochs=1, cache_dir=tmp_path).cache_path != again.cache_path
    assert len(list(tmp_path.glob("prior-*.pt"))) == 3


def test_prior_accepts_a_dataset_and_a_loader(small_images):
    from torch.utils.data import DataLoader, TensorDataset

    from interp.models.prior import training_images

    labels = torch.zeros(len(small_images), dtype=torch.long)
    ds = TensorDataset(small_images, labels)
    assert torch.equal(training_images(ds), small_images)
    assert torch.equal(training_images(DataLoader(ds, batch_size=64)), small_images)


def test_prior_decoder_makes_images(small_prior):
    out = small_prior.decoder(torch.randn(5, small_prior.latent_dim))
    assert out.shape == (5, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    assert small_prior.sample(3, torch.Generator().manual_seed(0)).shape == (3, 1, 28, 28)


def test_latent_param_renders_units(small_prior, mnist_root):
    from interp.models import MnistMLP

    torch.manual_seed(0)
    model = MnistMLP(hidden=64).eval()
    decoder_before = {k: v.clone() for k, v in small_prior.decoder.state_dict().items()}
    units = [0, 1, 2, 3]
    view = LatentParam(small_prior.decoder, batch=4, latent_dim=small_prior.latent_dim, seed=0, max_norm=4.0)
    assert [n for n, _ in view.named_parameters()] == ["z"]
    assert view.shape == (4, 1, 28, 28)
    with torch.no_grad(), Capture(model, "dense_1") as cap:
        start = obj.channel("dense_1", units)(cap(view()))
    result = render_units(
        model, "dense_1", units, param=view, steps=60, lr=0.05, regularizer=-1e-3 * view.latent_penalty()
    )
    assert result.image.shape == (4, 1, 28, 28)
    assert result.image.min() >= 0 and result.image.max() <= 1
    gain = result.activations - start
    assert (gain > 0.02).all() and gain.mean() > 0.05, (start, result.activations)  # a random MLP: small scale
    assert (view.z.detach().norm(dim=1) <= 4.0 + 1e-5).all()
    # The prior itself was neither trained nor moved.
    for k, v in small_prior.decoder.state_dict().items():
        assert torch.equal(v, decoder_before[k])
    # render too (a single objective, no units).
    single = LatentParam(small_prior.decoder, batch=1, seed=1)
    out = render(model, obj.channel("dense_1", 5), param=single, steps=10, transforms=None)
    assert out.image.shape == (1, 1, 28, 28)


def test_latent_param_starts_from_codes_and_stays_near_them(small_prior, small_images, mnist_root):
    from interp.models import MnistMLP
    from interp.optvis.latent import default_radius, mean_codes

    torch.manual_seed(0)
    model = MnistMLP(hidden=64).eval()
    groups = small_images[:12].reshape(4, 3, 1, 28, 28)  # 4 "units", 3 examples each
    starts = mean_codes(small_prior.encode, groups)
    with torch.no_grad():
        expected = small_prior.encode(groups[1].float() / 255)[0].mean(0)
    torch.testing.assert_close(starts[1], expected)
    view = LatentParam(small_prior.decoder, batch=4, start=starts, radius=1.5)
    assert torch.equal(view.z.detach(), starts) and torch.equal(view.start, starts)
    result = render_units(model, "dense_1", [0, 1, 2, 3], param=view, steps=60, lr=0.2, transforms=None)
    moved = (view.latent().detach() - starts).norm(dim=1)
    assert (moved <= 1.5 + 1e-4).all() and (moved > 0.5).all(), moved  # it moved, inside the ball
    assert (view.latent().detach().norm(dim=1) <= view.max_norm + 1e-4).all()
    assert result.image.min() >= 0 and result.image.max() <= 1
    # the start is saved with the view and follows it; a wrong shape is refused
    assert "start" in view.state_dict()
    assert LatentParam(small_prior.decoder, batch=4, start=starts).radius == default_radius(small_prior.latent_dim)
    with pytest.raises(ValueError, match="start must be"):
        LatentParam(small_prior.decoder, batch=3, start=starts)


def test_latent_param_defaults():
    decoder = nn.Sequential(nn.Linear(4, 36), nn.Sigmoid(), nn.Unflatten(1, (1, 6, 6)))
    with pytest.raises(ValueError, match="latent_dim"):
        LatentParam(decoder, batch=2)
    decoder.latent_dim = 4
    view = LatentParam(decoder, batch=2, seed=0, init_sd=100.0)
    assert view.max_norm == pytest.approx(default_max_norm(4))
    assert (view.latent().norm(dim=1) <= view.max_norm + 1e-5).all()
    assert decoder[0].weight.requires_grad  # the original is untouched
    penalty = view.latent_penalty()
    assert penalty.model_layers == () and penalty({}).shape == (2,)


def test_prior_view_starts_from_each_units_top_examples(small_prior, trained_mlp, mnist_small, tmp_path):
    """With the layer's top-k examples and a prior that encodes, the prior view starts each unit at
    the mean code of its top examples (and runs without transforms): the same images as a
    LatentParam started there by hand. Without examples, or with a bare decoder, it starts at
    random codes."""
    from torch.utils.data import TensorDataset

    from interp.optvis.latent import mean_codes
    from interp.report import Reporter
    from interp.steps.featvis import FeatVisSettings, ViewInputs, feature_visualization, prior_starts
    from interp.steps.topk import Examples, mine

    x, y = mnist_small
    data = TensorDataset(x[:1000], y[:1000])
    units = [3, 7, 11]
    examples = Examples(mine(trained_mlp, "dense_1", units, 4, data), None, data)
    starts = prior_starts(small_prior, examples, units)
    by_hand = mean_codes(small_prior.encode, x[:1000][examples.top.indices])
    torch.testing.assert_close(starts, by_hand)
    assert prior_starts(small_prior.decoder, examples, units) is None and prior_starts(small_prior, None, units) is None

    settings = FeatVisSettings(views=("prior",), steps=12)
    reporter = Reporter(tmp_path, enabled=False)
    inputs = ViewInputs(prior=small_prior, examples=examples)
    started = feature_visualization(trained_mlp, reporter, "dense_1", units, settings, inputs)
    view = LatentParam(small_prior.decoder, batch=3, start=by_hand)
    expected = render_units(trained_mlp, "dense_1", units, param=view, steps=12, transforms=None, shape=(1, 28, 28))
    # render_view pads its batch to a multiple of 4 rows (ROW_MULTIPLE), render_units renders 3: the
    # matrix kernels of a 3-row tail differ in the last bits on some CPUs
    torch.testing.assert_close(started.renderings["prior"].image, expected.image, atol=1e-5, rtol=0)
    random = feature_visualization(trained_mlp, reporter, "dense_1", units, settings, ViewInputs(prior=small_prior))
    assert not torch.allclose(random.renderings["prior"].image, expected.image, atol=1e-3)
