"""Every score of ``interp.optvis.scores`` against Quantus 0.6.0 on the same model, inputs, maps, baselines and
random draws, in float64, to 1e-6. Where Quantus defines a score differently the test configures Quantus to match or
transforms one side, and says so.

Quantus reads a classifier's outputs by ``y_batch``: :class:`UnitHead` makes a layer's units the "classes" (a
Linear unit's value, a channel's spatial mean), so ``y_batch`` holds unit indices. Quantus turns its numpy inputs into
tensors with ``torch.Tensor(x)``, i.e. the default dtype: the tests run with float64 as the default dtype.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time

import numpy as np
import pytest
import quantus
import torch
from torch import nn

from interp.models.mlp import MnistMLP
from interp.optvis import scores
from interp.optvis.capture import Capture

torch.set_num_threads(2)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
    pytest.mark.filterwarnings("ignore:The settings for perturbing input"),
]

LAYER = "dense_1"
UNITS = [3, 7]
TOL = 1e-6


class UnitHead(nn.Module):
    """``net``'s units of ``layer`` as outputs: what Quantus treats as class scores."""

    def __init__(self, net: nn.Module, layer: str):
        super().__init__()
        self.net, self.layer = net, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with Capture(self.net, [self.layer]) as cap:
            a = cap(x)[self.layer]
        return a if a.dim() == 2 else a.flatten(2).mean(2)


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def setup():
    """A random float64 MLP (hidden 64), four sparse digit-like images whose values are exact in float32."""
    torch.manual_seed(0)
    model = MnistMLP(hidden=64).double().eval()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 1, 28, 28, generator=g) * (torch.rand(4, 1, 28, 28, generator=g) > 0.6)).float().double()
    maps = torch.stack([scores.explainer(LAYER, "saliency")(model, x, u) for u in UNITS])  # [U, N, 1, 28, 28]
    return model, x, maps


def quantus_args(model, x, unit):
    return {
        "model": UnitHead(model, LAYER).eval(),
        "x_batch": x.numpy(),
        "y_batch": np.full(len(x), unit),
        "channel_first": True,
        "softmax": False,
    }


def replace_with(arr, indices, source, **kwargs):
    """A Quantus perturbation: features ``indices`` of each row of ``arr`` take the values of ``source``."""
    out = arr.copy()
    rows = np.arange(len(arr))[:, None]
    out[rows, indices] = source.reshape(len(arr), -1)[rows, indices]
    return out


def rank_map(maps: torch.Tensor, order: str = "morf") -> torch.Tensor:
    """A map whose descending order is our stable order of ``maps`` (no ties left for ``np.argsort`` to break)."""
    flat = maps.reshape(*maps.shape[:2], -1)
    ranks = scores._feature_ranks(flat, order, use_abs=False)
    return (-ranks.double()).reshape(maps.shape)


@pytest.mark.parametrize("baseline_kind", ["zeros", "blur"])
def test_deletion_matches_quantus_pixel_flipping(setup, monkeypatch, baseline_kind):
    model, x, maps = setup
    baseline = torch.zeros_like(x) if baseline_kind == "zeros" else scores.blurred(x, sigma=2.0)
    ours = scores.deletion(model, LAYER, UNITS, x, maps, baseline=baseline, features_per_step=8)
    steps = 784 // 8
    assert ours.curves.shape == (2, 4, steps + 1) and ours.fractions[0] == 0 and ours.fractions[-1] == 1
    # numpy 2.4 has no np.trapz; Quantus's calculate_auc calls it
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    for k, unit in enumerate(UNITS):
        metric = quantus.PixelFlipping(
            features_in_step=8,
            normalise=False,
            perturb_func=replace_with,
            perturb_func_kwargs={"source": baseline.numpy()},
            disable_warnings=True,
        )
        curve = np.array(metric(**quantus_args(model, x, unit), a_batch=maps[k].numpy()))
        # Quantus's curve starts after the first step: ours without the unperturbed value
        np.testing.assert_allclose(ours.curves[k, :, 1:].numpy(), curve, atol=TOL, rtol=0)
        auc = np.array(
            quantus.PixelFlipping(
                features_in_step=8,
                normalise=False,
                perturb_func=replace_with,
                perturb_func_kwargs={"source": baseline.numpy()},
                return_auc_per_sample=True,
                disable_warnings=True,
            )(**quantus_args(model, x, unit), a_batch=maps[k].numpy())
        )
        # Quantus: trapezoids of width 1 over steps 1..S; ours: x axis 0..1 including step 0
        c = ours.curves[k].numpy()
        np.testing.assert_allclose(ours.auc[k].numpy(), ((c[:, 0] + c[:, 1]) / 2 + auc) / steps, atol=TOL, rtol=0)
    if baseline_kind == "zeros":
        # Quantus's default "black" baseline is each image's minimum: zero for these images
        black = quantus.PixelFlipping(features_in_step=8, normalise=False, disable_warnings=True)
        curve = np.array(black(**quantus_args(model, x, UNITS[0]), a_batch=maps[0].numpy()))
        np.testing.assert_allclose(ours.curves[0, :, 1:].numpy(), curve, atol=TOL, rtol=0)


def test_deletion_orders_ties_by_index_and_lerf(setup):
    """Tied attributions (a map rounded to a few levels): ours breaks ties by ascending index, np.argsort does not
    promise any order; Quantus given our rank map (same order, no ties) computes our curve. LeRF is MoRF of -a
    in Quantus terms (and of the reversed rank map)."""
    model, x, maps = setup
    tied = (maps / maps.abs().amax() * 2).round()
    assert tied.unique().numel() <= 5
    for order in ("morf", "lerf"):
        ours = scores.deletion(model, LAYER, UNITS, x, tied, features_per_step=16, order=order)
        for k, unit in enumerate(UNITS):
            metric = quantus.PixelFlipping(features_in_step=16, normalise=False, perturb_baseline=0.0)
            a = rank_map(tied, order)[k].numpy()
            curve = np.array(metric(**quantus_args(model, x, unit), a_batch=a))
            np.testing.assert_allclose(ours.curves[k, :, 1:].numpy(), curve, atol=TOL, rtol=0)
    # stable order by hand: with all-equal maps the features go in index order
    flat = torch.zeros(1, 1, 6)
    assert scores._feature_ranks(flat, "morf", False).tolist() == [[[0, 1, 2, 3, 4, 5]]]
    assert scores._feature_ranks(flat, "lerf", False).tolist() == [[[0, 1, 2, 3, 4, 5]]]


def test_insertion_is_quantus_pixel_flipping_from_the_baseline(setup):
    """Insertion = Quantus's PixelFlipping run on the baseline images, "perturbing" by copying in the inputs."""
    model, x, maps = setup
    baseline = scores.blurred(x, sigma=3.0)
    ours = scores.insertion(model, LAYER, UNITS, x, maps, baseline=baseline, features_per_step=8)
    for k, unit in enumerate(UNITS):
        metric = quantus.PixelFlipping(
            features_in_step=8, normalise=False, perturb_func=replace_with, perturb_func_kwargs={"source": x.numpy()}
        )
        args = quantus_args(model, baseline, unit)
        curve = np.array(metric(**args, a_batch=maps[k].numpy()))
        np.testing.assert_allclose(ours.curves[k, :, 1:].numpy(), curve, atol=TOL, rtol=0)
    # the curve ends on the input and starts on the baseline
    values = scores.unit_values(model, LAYER, UNITS, x).T
    np.testing.assert_allclose(ours.curves[..., -1].numpy(), values.numpy(), atol=1e-12)
    np.testing.assert_allclose(
        ours.curves[..., 0].numpy(), scores.unit_values(model, LAYER, UNITS, baseline).T.numpy(), atol=1e-12
    )


def test_faithfulness_correlation_matches_quantus(setup):
    model, x, maps = setup
    runs, size, seed = 20, 50, 123
    for k, unit in enumerate(UNITS):
        # Quantus draws one np.random.choice per run and input (in that loop order); replay the draws for ours
        np.random.seed(seed)
        drawn = np.stack([[np.random.choice(784, size, replace=False) for _ in range(len(x))] for _ in range(runs)])
        subsets = torch.as_tensor(drawn).permute(1, 0, 2)  # [N, R, S]
        ours = scores.faithfulness_correlation(model, LAYER, [unit], x, maps[k : k + 1], subsets=subsets)
        np.random.seed(seed)
        metric = quantus.FaithfulnessCorrelation(
            nr_runs=runs,
            subset_size=size,
            perturb_baseline=0.0,
            normalise=False,
            return_aggregate=False,
            disable_warnings=True,
        )
        theirs = np.array(metric(**quantus_args(model, x, unit), a_batch=maps[k].numpy()))
        np.testing.assert_allclose(ours.correlation[0].numpy(), theirs, atol=TOL, rtol=0)
        # Quantus's normalise=True (divide by the max magnitude) leaves a Pearson correlation unchanged
        np.random.seed(seed)
        normalised = quantus.FaithfulnessCorrelation(
            nr_runs=runs, subset_size=size, perturb_baseline=0.0, return_aggregate=False, disable_warnings=True
        )
        theirs = np.array(normalised(**quantus_args(model, x, unit), a_batch=maps[k].numpy()))
        np.testing.assert_allclose(ours.correlation[0].numpy(), theirs, atol=TOL, rtol=0)
    # our own draws: seeded, shared by the units, distinct features
    a = scores.faithfulness_correlation(model, LAYER, UNITS, x, maps, n_runs=runs, subset_size=size, seed=5)
    b = scores.faithfulness_correlation(model, LAYER, UNITS, x, maps, n_runs=runs, subset_size=size, seed=5)
    assert torch.equal(a.correlation, b.correlation) and torch.equal(a.subsets[0], a.subsets[1])
    assert all(len(set(s.tolist())) == size for s in a.subsets[0, 0])
    assert torch.isfinite(a.correlation).all() and (a.correlation.abs() <= 1).all()


def test_max_sensitivity_matches_quantus(setup):
    model, x, maps = setup
    radius, samples, seed = 0.05, 5, 7
    explain = scores.explainer(LAYER, "ig", n_steps=8)
    ig_maps = torch.stack([explain(model, x, u) for u in UNITS])

    def quantus_explain(model, inputs, targets, **kwargs):
        return explain(model.net, torch.as_tensor(inputs), int(targets[0])).numpy()

    np.random.seed(seed)  # Quantus: one np.random.uniform(size=(N, F)) per sample
    noise = torch.as_tensor(np.stack([np.random.uniform(-radius, radius, (len(x), 784)) for _ in range(samples)]))
    ours = scores.max_sensitivity(model, UNITS, x, explain, maps=ig_maps, noise=noise.reshape(samples, *x.shape))
    for k, unit in enumerate(UNITS):
        for relative in (True, False):
            np.random.seed(seed)
            options = {} if relative else {"norm_denominator": lambda a: np.ones(len(a))}
            metric = quantus.MaxSensitivity(nr_samples=samples, lower_bound=radius, disable_warnings=True, **options)
            theirs = np.array(
                metric(**quantus_args(model, x, unit), a_batch=ig_maps[k].numpy(), explain_func=quantus_explain)
            )
            expected = ours.relative[k] if relative else ours.max_sensitivity[k]
            np.testing.assert_allclose(expected.numpy(), theirs, atol=TOL, rtol=0)
    # seeded draws of our own: reproducible, and the noise is within the radius
    a = scores.max_sensitivity(model, UNITS, x, explain, radius=radius, n_samples=3, seed=1)
    b = scores.max_sensitivity(model, UNITS, x, explain, radius=radius, n_samples=3, seed=1)
    assert torch.equal(a.max_sensitivity, b.max_sensitivity) and (a.max_sensitivity > 0).all()


def test_sparseness_matches_quantus(setup):
    model, x, maps = setup
    ours = scores.sparseness(maps)
    for k in range(len(UNITS)):
        a = maps[k].numpy()
        # Quantus adds 1e-7 to every entry: ours of |a| + 1e-7 ...
        raw = quantus.Sparseness(normalise=False, disable_warnings=True)(
            model=None, x_batch=x.numpy(), y_batch=None, a_batch=a.copy(), channel_first=True
        )
        np.testing.assert_allclose(
            scores.sparseness(maps[k : k + 1].abs() + 1e-7).gini[0].numpy(), raw, atol=TOL, rtol=0
        )
        # ... and by default first divides by the largest magnitude
        default = quantus.Sparseness(disable_warnings=True)(
            model=None, x_batch=x.numpy(), y_batch=None, a_batch=a.copy(), channel_first=True
        )
        m = maps[k : k + 1].abs()
        scaled = m / m.flatten(2).amax(2).reshape(1, -1, 1, 1, 1) + 1e-7
        np.testing.assert_allclose(scores.sparseness(scaled).gini[0].numpy(), default, atol=TOL, rtol=0)
        # without the epsilon the two differ, by little here
        np.testing.assert_allclose(ours.gini[k].numpy(), default, atol=1e-3)
    assert scores.gini(torch.tensor([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.75)
    assert scores.gini(torch.ones(5)) == 0 and scores.gini(torch.zeros(5)) == 0


def test_cascading_randomization_matches_quantus_mprt(setup):
    model, x, maps = setup
    layer = "dense_2"
    explain = scores.explainer(layer, "saliency")
    ours = scores.model_parameter_randomization(model, layer, UNITS, x, explain, seed=43)
    assert ours.layers == ["dense_2", "dense_1"]  # dense_3 is above the unit
    assert ours.similarity.shape == (2, 4, 2)
    saliency = torch.stack([explain(model, x, u) for u in UNITS])

    def quantus_explain(model, inputs, targets, **kwargs):
        return explain(model.net, torch.as_tensor(inputs), int(targets[0])).numpy()

    for k, unit in enumerate(UNITS):
        args = quantus_args(model, x, unit)
        args["model"] = UnitHead(model, layer).eval()
        metric = quantus.MPRT(seed=42, normalise=False, disable_warnings=True)  # seeds with 42 + 1
        theirs = metric(**args, a_batch=saliency[k].numpy(), explain_func=quantus_explain)
        assert list(theirs) == ["original", "net.dense_3", "net.dense_2", "net.dense_1"]
        np.testing.assert_allclose(theirs["original"], 1.0, atol=TOL)
        np.testing.assert_allclose(theirs["net.dense_3"], 1.0, atol=TOL)  # above the unit: the map cannot change
        np.testing.assert_allclose(ours.similarity[k, :, 0].numpy(), theirs["net.dense_2"], atol=TOL, rtol=0)
        np.testing.assert_allclose(ours.similarity[k, :, 1].numpy(), theirs["net.dense_1"], atol=TOL, rtol=0)
    # the model itself is untouched, and randomizing changes the maps
    again = torch.stack([explain(model, x, u) for u in UNITS])
    assert torch.equal(again, saliency) and (ours.similarity[..., -1] < 0.9).all()


def test_spearman_and_pearson_match_scipy():
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 40), generator=g).double()  # many ties
    b = torch.randn(3, 40, generator=g, dtype=torch.float64)
    for i in range(3):
        assert scores.spearman_rows(a, b)[i].item() == pytest.approx(stats.spearmanr(a[i], b[i])[0], abs=1e-12)
        assert scores.pearson(a, b)[i].item() == pytest.approx(stats.pearsonr(a[i], b[i])[0], abs=1e-12)
    assert torch.isnan(scores.pearson(torch.ones(4), torch.arange(4.0)))


def test_scores_on_conv_channels_and_pixel_maps():
    """Conv units are channel means; a one-channel map of an RGB input flips whole pixels."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3)).eval()
    x = torch.rand(2, 3, 10, 10)
    values = scores.unit_values(net, "2", [1, 4], x)
    np.testing.assert_allclose(values.numpy(), net(x)[:, [1, 4]].mean((2, 3)).detach().numpy(), atol=1e-12)
    maps = torch.rand(2, 2, 1, 10, 10)
    curve = scores.deletion(net, "2", [1, 4], x, maps, features_per_step=10)
    assert curve.curves.shape == (2, 2, 11)
    zero = scores.unit_values(net, "2", [1, 4], torch.zeros_like(x)).T
    np.testing.assert_allclose(curve.curves[..., -1].numpy(), zero.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="do not fit"):
        scores.deletion(net, "2", [1, 4], x, torch.rand(2, 2, 2, 10, 10))


def test_cost_per_unit_on_dense_1():
    """Seconds per unit (8 inputs, default settings) of each score for dense_1 of the full-size MLP (784-512-512-10,
    float32; printed with ``-s``, not asserted)."""
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    model = MnistMLP().eval()
    x = torch.rand(8, 1, 28, 28)
    units = list(range(4))
    explain = scores.explainer(LAYER, "saliency")
    maps = torch.stack([explain(model, x, u) for u in units])
    timings = {}
    for name, fn in {
        "deletion": lambda: scores.deletion(model, LAYER, units, x, maps),
        "insertion": lambda: scores.insertion(model, LAYER, units, x, maps),
        "faithfulness_correlation": lambda: scores.faithfulness_correlation(model, LAYER, units, x, maps),
        "max_sensitivity": lambda: scores.max_sensitivity(model, units, x, explain, maps=maps),
        "sparseness": lambda: scores.sparseness(maps),
        "mprt": lambda: scores.model_parameter_randomization(model, LAYER, units, x, explain, maps=maps),
    }.items():
        start = time.perf_counter()
        fn()
        timings[name] = (time.perf_counter() - start) / len(units)
    print("\nseconds per unit (8 inputs, MLP dense_1):", {k: round(v, 4) for k, v in timings.items()})
    assert all(0 <= t < 30 for t in timings.values())
