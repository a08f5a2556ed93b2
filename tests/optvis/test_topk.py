"""Tests of interp.optvis.topk: exact top-k mining, merging across shards and processes.

Every mined result is compared with a brute force that materializes all activations (with
forward hooks of its own, not Capture), computed on the same batches so values are bitwise
comparable, and sorted with the documented order: value first, lower dataset index on ties.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import Boom
from interp.optvis import topk as topk_module
from interp.optvis.topk import TopK, all_gather_topk, merge_topk, mine_topk, shard_range


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster, and steadier on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# Brute force


def layer_outputs(model: nn.Module, layer: str, data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """All outputs of ``layer`` for ``data``, computed batch by batch like mine_topk does."""
    module = dict(model.named_modules())[layer]
    outs = []
    handle = module.register_forward_hook(lambda m, i, o: outs.append(o.detach().clone()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, data.shape[0], batch_size):
                x = data[start : start + batch_size]
                if x.dtype == torch.uint8:
                    x = x.float().div_(255)
                model(x)
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(outs)


def first_argmax(flat: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum along the last dim, without relying on argmax's tie rule."""
    at_max = flat == flat.amax(-1, keepdim=True)
    ar = torch.arange(flat.shape[-1]).expand_as(flat)
    return torch.where(at_max, ar, flat.shape[-1]).amin(-1)


def brute_topk(model, layer, data, k=16, units=None, spatial="max", largest=True, batch_size=1024):
    out = layer_outputs(model, layer, data, batch_size)
    positions = None
    if out.ndim == 4:
        flat = out.flatten(2)
        if spatial == "max":
            acts = flat.amax(2)
            pos = first_argmax(flat)
            positions = torch.stack([pos // out.shape[3], pos % out.shape[3]], -1)  # [N, C, 2]
        else:
            acts = flat.mean(2)
    else:
        acts = out
    if units is not None:
        acts = acts[:, units]
        positions = None if positions is None else positions[:, units]
    per_unit = acts.t()  # [U, N]; columns are already in index order
    values, order = per_unit.sort(dim=1, descending=largest, stable=True)
    kk = min(k, acts.shape[0])
    values, order = values[:, :kk], order[:, :kk]
    if positions is not None:
        positions = positions.permute(1, 0, 2).gather(1, order.unsqueeze(-1).expand(-1, -1, 2))
    return values, order, positions


def assert_same(result: TopK, expected, what=""):
    values, indices, positions = expected
    assert result.values.shape == values.shape, what
    assert torch.equal(result.indices, indices), f"indices differ {what}"
    assert torch.equal(result.values, values), f"values differ {what}"
    if positions is None:
        assert result.positions is None
    else:
        assert torch.equal(result.positions, positions), f"positions differ {what}"


def assert_topk_equal(a: TopK, b: TopK):
    assert torch.equal(a.values, b.values)
    assert torch.equal(a.indices, b.indices)
    assert (a.positions is None) == (b.positions is None)
    if a.positions is not None:
        assert torch.equal(a.positions, b.positions)
    assert torch.equal(a.units, b.units)
    assert a.layer == b.layer and a.largest == b.largest


# --------------------------------------------------------------------------------------------
# Small models and data


def mlp(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 24), nn.ReLU(), nn.Linear(24, 6))


def convnet(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3))


def randn(*shape, seed=1):
    """Normal values for 2-D inputs; 4-D inputs are images, so uniform in [0, 1] for those."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=gen) if len(shape) == 4 else torch.randn(*shape, generator=gen)


# --------------------------------------------------------------------------------------------
# Exactness against brute force


@pytest.mark.parametrize("k", [1, 16, 700])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("batch_size", [64, 50, 7])
def test_linear_matches_brute_force(k, largest, batch_size):
    model, x = mlp(), randn(600, 20)
    result = mine_topk(model, "0", x, k=k, largest=largest, batch_size=batch_size)
    assert_same(result, brute_topk(model, "0", x, k=k, largest=largest, batch_size=batch_size))
    assert result.indices.dtype == torch.int64 and result.units.dtype == torch.int64
    assert torch.equal(result.units, torch.arange(24))
    assert result.layer == "0" and result.largest is largest and result.requested_k == k
    assert result.k == min(k, 600)


def test_order_is_descending_or_ascending():
    model, x = mlp(), randn(300, 20)
    top = mine_topk(model, "2", x, k=10, batch_size=32)
    bottom = mine_topk(model, "2", x, k=10, batch_size=32, largest=False)
    assert (top.values[:, :-1] >= top.values[:, 1:]).all()
    assert (bottom.values[:, :-1] <= bottom.values[:, 1:]).all()
    assert (bottom.values[:, 0] < top.values[:, 0]).all()
    full = layer_outputs(model, "2", x, 32)
    assert torch.equal(top.values[:, 0], full.amax(0))
    assert torch.equal(bottom.values[:, 0], full.amin(0))


def test_k_larger_than_data_is_clipped():
    model, x = mlp(), randn(13, 20)
    result = mine_topk(model, "0", x, k=50, batch_size=4)
    assert result.values.shape == (24, 13) and result.requested_k == 50
    assert_same(result, brute_topk(model, "0", x, k=50, batch_size=4))
    # every example appears exactly once per unit
    assert torch.equal(result.indices.sort(dim=1).values, torch.arange(13).expand(24, -1))


@pytest.mark.parametrize("largest", [True, False])
def test_units_subset_keeps_the_order_given(largest):
    model, x = mlp(), randn(400, 20)
    units = [5, 0, 17]
    result = mine_topk(model, "0", x, k=8, units=units, largest=largest, batch_size=64)
    assert torch.equal(result.units, torch.tensor(units))
    assert_same(result, brute_topk(model, "0", x, k=8, units=units, largest=largest, batch_size=64))
    single = mine_topk(model, "0", x, k=8, units=17, largest=largest, batch_size=64)
    assert torch.equal(single.indices, result.indices[2:])


@pytest.mark.parametrize("layer", ["0", "1", "2"])
@pytest.mark.parametrize("largest", [True, False])
def test_conv_max_positions_match_brute_force(layer, largest):
    model, x = convnet(), randn(150, 3, 9, 8)
    result = mine_topk(model, layer, x, k=12, largest=largest, batch_size=32)
    expected = brute_topk(model, layer, x, k=12, largest=largest, batch_size=32)
    assert_same(result, expected, layer)
    assert result.positions.shape == (result.values.shape[0], 12, 2)
    # the activation at the reported position is the reported value
    out = layer_outputs(model, layer, x, 32)
    u = result.units.view(-1, 1).expand_as(result.indices)
    at = out[result.indices, u, result.positions[..., 0], result.positions[..., 1]]
    assert torch.equal(at, result.values)


def test_conv_positions_are_y_x_of_a_known_peak():
    model = nn.Sequential(nn.Identity())
    x = torch.zeros(5, 2, 4, 6)
    x[3, 1, 2, 5] = 0.7  # example 3, channel 1, y=2, x=5
    x[1, 0, 3, 1] = 0.2
    result = mine_topk(model, "0", x, k=2, batch_size=2)
    assert result.indices[1, 0] == 3 and result.positions[1, 0].tolist() == [2, 5]
    assert result.indices[0, 0] == 1 and result.positions[0, 0].tolist() == [3, 1]
    # all-zero maps: the first position (0, 0) and the lowest indices win the ties
    assert result.positions[1, 1].tolist() == [0, 0] and result.indices[1, 1] == 0


@pytest.mark.parametrize("largest", [True, False])
def test_conv_mean(largest):
    model, x = convnet(), randn(120, 3, 8, 8)
    result = mine_topk(model, "2", x, k=9, spatial="mean", largest=largest, units=[4, 1], batch_size=40)
    assert result.positions is None
    assert_same(result, brute_topk(model, "2", x, k=9, spatial="mean", largest=largest, units=[4, 1], batch_size=40))
    max_result = mine_topk(model, "2", x, k=9, spatial="max", largest=largest, units=[4, 1], batch_size=40)
    assert not torch.equal(max_result.values, result.values)


# --------------------------------------------------------------------------------------------
# Ties


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("batch_size", [5, 32, 64, 1000])
def test_exact_ties_go_to_the_lower_index(largest, batch_size):
    # activations = the data itself: few distinct values, so ties within and across batches
    model = nn.Sequential(nn.Flatten())
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(-2, 3, (500, 1, 2, 4), generator=gen).float().add(2).div(4)  # 5 values in [0, 1]
    result = mine_topk(model, "0", x, k=20, largest=largest, batch_size=batch_size)
    assert_same(result, brute_topk(model, "0", x, k=20, largest=largest, batch_size=batch_size))
    # directly: the winners of a unit are the lowest indices holding its extreme value
    col = x.flatten(1)[:, 3]
    best = col.max() if largest else col.min()
    holders = torch.nonzero(col == best).squeeze(1)
    n = min(20, holders.numel())
    assert torch.equal(result.indices[3, :n], holders[:n])


def test_all_equal_values_give_indices_in_order():
    model = nn.Sequential(nn.Flatten())
    x = torch.ones(300, 3)
    for largest in (True, False):
        result = mine_topk(model, "0", x, k=16, largest=largest, batch_size=64, index_offset=10)
        assert torch.equal(result.indices, torch.arange(10, 26).expand(3, -1))


def test_negative_and_positive_zero_tie():
    model = nn.Sequential(nn.Flatten())
    x = torch.tensor([[-1.0], [-0.0], [0.0], [-0.0], [-3.0], [0.0], [-0.0]] * 10)
    for bs in (3, 7, 70):
        top = mine_topk(model, "0", x, k=30, batch_size=bs)
        zeros = torch.nonzero(x[:, 0] == 0).squeeze(1)
        assert torch.equal(top.indices[0], zeros[:30])
        bottom = mine_topk(model, "0", x, k=30, batch_size=bs, largest=False)
        assert_same(bottom, brute_topk(model, "0", x, k=30, largest=False, batch_size=bs))


def test_worst_case_every_batch_beats_the_buffer():
    model = nn.Sequential(nn.Flatten())
    x = torch.linspace(-5, 5, 2048).view(-1, 1, 1).repeat(1, 1, 3)
    x[:, 0, 2] *= -1
    for largest in (True, False):
        result = mine_topk(model, "0", x, k=40, largest=largest, batch_size=64)
        assert_same(result, brute_topk(model, "0", x, k=40, largest=largest, batch_size=64))


def test_nan_does_not_break_the_other_units():
    model = nn.Sequential(nn.Flatten())
    x = randn(300, 4)
    x[5:200:7, 1] = float("nan")
    x[:, 2] = float("nan")
    for bs in (300, 64):
        result = mine_topk(model, "0", x, k=10, batch_size=bs)
        for unit in (0, 3):
            expected = brute_topk(model, "0", x[:, unit : unit + 1], k=10, batch_size=bs)
            assert torch.equal(result.values[unit], expected[0][0])
            assert torch.equal(result.indices[unit], expected[1][0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("largest", [True, False])
def test_other_dtypes(dtype, largest):
    # float64 takes the stable-sort path; bfloat16 the key path (and has many ties)
    model = mlp().to(dtype)
    x = randn(500, 20).to(dtype)
    result = mine_topk(model, "0", x, k=16, largest=largest, batch_size=64)
    assert result.values.dtype == dtype
    assert_same(result, brute_topk(model, "0", x, k=16, largest=largest, batch_size=64))


def test_float64_conv_positions():
    model, x = convnet().double(), randn(90, 3, 7, 7).double()
    result = mine_topk(model, "1", x, k=10, batch_size=16)
    assert_same(result, brute_topk(model, "1", x, k=10, batch_size=16))


# --------------------------------------------------------------------------------------------
# How the model runs


def test_inplace_relu_after_the_layer_does_not_corrupt_values():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(inplace=True), nn.Linear(6, 3))
    x = randn(200, 8)
    bottom = mine_topk(model, "0", x, k=5, largest=False, batch_size=50)
    assert (bottom.values < 0).all()  # a ReLU applied in place would have zeroed these
    assert_same(bottom, brute_topk(model, "0", x, k=5, largest=False, batch_size=50))


def test_forward_stops_at_the_layer():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), Boom())
    result = mine_topk(model, "1", randn(20, 4), k=3, batch_size=8)
    assert result.values.shape == (3, 3)
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_eval_mode_inside_and_mode_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))
    with torch.no_grad():
        model[2].running_mean.uniform_(-1, 1)
    model.train()
    mean = model[2].running_mean.clone()
    x = randn(100, 10)
    result = mine_topk(model, "2", x, k=4, batch_size=25)
    assert model.training and model[1].training and model[2].training
    assert torch.equal(model[2].running_mean, mean)  # no batch statistics were taken
    assert_same(result, brute_topk(model, "2", x, k=4, batch_size=25))  # brute force runs in eval
    assert all(p.requires_grad for p in model.parameters())


def test_uint8_images_are_scaled_to_unit_range():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    x = torch.randint(0, 256, (90, 1, 4, 4), dtype=torch.uint8)
    as_uint8 = mine_topk(model, "1", x, k=7, batch_size=32)
    as_float = mine_topk(model, "1", x.float().div_(255), k=7, batch_size=32)
    assert_topk_equal(as_uint8, as_float)


def test_mnist_mlp_dense_1_uint8():
    from interp.models import MnistMLP

    torch.manual_seed(0)
    model = MnistMLP()
    x = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8)
    result = mine_topk(model, "dense_1", x, k=5, batch_size=128)
    assert result.values.shape == (512, 5)
    assert_same(result, brute_topk(model, "dense_1", x, k=5, batch_size=128))


def test_iterable_batches_and_index_offset():
    model, x = mlp(), randn(230, 20)
    y = torch.zeros(230, dtype=torch.long)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=40)
    from_loader = mine_topk(model, "2", loader, k=6, index_offset=1000)
    from_tensor = mine_topk(model, "2", x, k=6, batch_size=40)
    assert torch.equal(from_loader.indices, from_tensor.indices + 1000)
    assert torch.equal(from_loader.values, from_tensor.values)
    generator = (x[i : i + 40] for i in range(0, 230, 40))  # plain tensors, no len()
    assert_topk_equal(mine_topk(model, "2", generator, k=6), from_tensor)
    tuples = [(x[i : i + 40],) for i in range(0, 230, 40)]
    assert_topk_equal(mine_topk(model, "2", tuples, k=6), from_tensor)


def test_progress_bar(capsys):
    model, x = mlp(), randn(100, 20)
    quiet = mine_topk(model, "0", x, k=3, batch_size=10)
    assert capsys.readouterr().err == ""
    shown = mine_topk(model, "0", x, k=3, batch_size=10, progress=True)
    err = capsys.readouterr().err
    assert "10/10" in err and "top-k 0" in err
    assert_topk_equal(quiet, shown)


def test_memory_stays_units_times_k(monkeypatch):
    widths, queued = [], []
    add = topk_module._Running.add

    def spy(self, a, pos, base):
        add(self, a, pos, base)
        widths.append(self.filled)
        queued.append(sum(values.numel() for _, _, values, _ in self.pending))

    monkeypatch.setattr(topk_module._Running, "add", spy)
    model = mlp()
    batches = (randn(50, 20, seed=s) for s in range(200))
    result = mine_topk(model, "0", batches, k=8)
    assert len(widths) == 200 and max(widths) == 8
    # the queue of candidates waiting for a merge never exceeds its bound (plus one batch)
    assert max(queued) <= topk_module._MERGE_EVERY * 8 * 24 + 50 * 24
    assert result.indices.max() >= 9000  # late examples can still win


# --------------------------------------------------------------------------------------------
# A small MLP trained for a moment (real MNIST when INTERP_DATA_DIR holds it)


def mnist_or_synthetic(n=2000):
    """Real MNIST when INTERP_DATA_DIR holds it (a broken copy fails the test), else synthetic digits."""
    root = os.environ.get("INTERP_DATA_DIR")
    if root and (Path(root) / "MNIST" / "raw").is_dir():
        from interp.data import load_mnist

        images, labels = load_mnist(root, train=True, download=False)
        return images[:n].float().div_(255), labels[:n]
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n,), generator=gen)
    prototypes = torch.rand(10, 1, 28, 28, generator=gen)
    images = (prototypes[labels] + 0.3 * torch.rand(n, 1, 28, 28, generator=gen)).clamp(0, 1)
    return images, labels


def test_trained_mlp_matches_brute_force():
    x, y = mnist_or_synthetic()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        i = torch.randint(0, x.shape[0], (128,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8  # it learned something
    for layer in ("1", "2", "3"):  # "2" is a ReLU: zeros tie
        for largest in (True, False):
            for k in (1, 16):
                result = mine_topk(model, layer, x, k=k, largest=largest, batch_size=256)
                assert_same(result, brute_topk(model, layer, x, k=k, largest=largest, batch_size=256), layer)
    # the class units are driven hardest by images of their own class
    top = mine_topk(model, "3", x, k=16, batch_size=256)
    assert (y[top.indices] == torch.arange(10).unsqueeze(1)).float().mean() > 0.9


# --------------------------------------------------------------------------------------------
# Errors


def test_errors():
    model, x = mlp(), randn(10, 20)
    named = nn.Sequential(OrderedDict(dense_1=nn.Linear(20, 3), relu_1=nn.ReLU()))
    with pytest.raises(ValueError, match="unknown layer 'dense1'.*Closest: dense_1"):
        mine_topk(named, "dense1", x)
    with pytest.raises(ValueError, match=r"unit 24 is out of range for layer '0', which has 24 units"):
        mine_topk(model, "0", x, units=[3, 24])
    with pytest.raises(ValueError, match="unit -1 is out of range"):
        mine_topk(model, "0", x, units=[-1])
    for bad_k in (0, -2, 1.5):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            mine_topk(model, "0", x, k=bad_k)
    with pytest.raises(ValueError, match="empty data"):
        mine_topk(model, "0", x[:0])
    with pytest.raises(ValueError, match="empty data"):
        mine_topk(model, "0", [])
    with pytest.raises(ValueError, match="empty data"):
        mine_topk(model, "0", [x[:0], (x[:0], None)])
    with pytest.raises(ValueError, match="spatial must be one of"):
        mine_topk(model, "0", x, spatial="min")
    with pytest.raises(ValueError, match="units is empty"):
        mine_topk(model, "0", x, units=[])
    with pytest.raises(ValueError, match="units must be integers"):
        mine_topk(model, "0", x, units=[1.0])
    with pytest.raises(ValueError, match=r"\[N, C\] or \[N, C, H, W\]"):
        mine_topk(nn.Sequential(nn.Identity()), "0", randn(4, 2, 3))
    with pytest.raises(TypeError, match="a batch must be a Tensor"):
        mine_topk(model, "0", [{"x": x}])
    with pytest.raises(ValueError, match="batch dimension"):
        mine_topk(model, "0", [torch.tensor(1.0)])
    with pytest.raises(ValueError, match="index_offset"):
        mine_topk(model, "0", x, index_offset=-1)
    assert not any(m._forward_hooks for m in model.modules())


# --------------------------------------------------------------------------------------------
# Shards: merge_topk, shard_range, all_gather_topk


def _dotted_net() -> nn.Module:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    return nn.Sequential(features, nn.Flatten(), nn.Linear(4 * 12 * 12, 3)).eval()


def test_top_k_refuses_a_shuffled_loader():
    model = _dotted_net()
    data = TensorDataset(torch.rand(20, 1, 12, 12), torch.zeros(20))
    with pytest.raises(ValueError, match="fixed order"):
        mine_topk(model, "0.0", DataLoader(data, batch_size=4, shuffle=True), k=2)
    assert mine_topk(model, "0.0", DataLoader(data, batch_size=4), k=2).indices.shape == (4, 2)


def test_merge_of_shards_equals_one_pass():
    model, x = convnet(), randn(170, 3, 6, 6)
    whole = mine_topk(model, "1", x, k=20, batch_size=8)
    bounds = [(0, 8), (8, 96), (96, 104), (104, 170)]  # two shards smaller than k
    parts = [mine_topk(model, "1", x[a:b], k=20, batch_size=8, index_offset=a) for a, b in bounds]
    assert parts[0].k == 8
    assert_topk_equal(merge_topk(parts[::-1]), whole)
    assert merge_topk(parts).requested_k == 20
    assert merge_topk(parts, k=3).values.shape == (6, 3)


def test_merge_ties_across_shards():
    model = nn.Sequential(nn.Flatten())
    x = torch.zeros(40, 2)
    x[30:, 1] = 1.0
    parts = [mine_topk(model, "0", x[a : a + 10], k=5, index_offset=a) for a in (30, 0, 20, 10)]
    merged = merge_topk(parts)
    assert merged.indices[0].tolist() == [0, 1, 2, 3, 4]
    assert merged.indices[1].tolist() == [30, 31, 32, 33, 34]
    bottom = merge_topk([mine_topk(model, "0", x[a : a + 10], k=5, index_offset=a, largest=False) for a in (30, 0)])
    assert bottom.indices[1].tolist() == [0, 1, 2, 3, 4]


def test_merge_errors():
    model, x = mlp(), randn(30, 20)
    a = mine_topk(model, "0", x, k=4)
    with pytest.raises(ValueError, match="at least one"):
        merge_topk([])
    with pytest.raises(ValueError, match="different layers"):
        merge_topk([a, mine_topk(model, "2", x, k=4)])
    with pytest.raises(ValueError, match="different layers or directions"):
        merge_topk([a, mine_topk(model, "0", x, k=4, largest=False)])
    with pytest.raises(ValueError, match="different units"):
        merge_topk([a, mine_topk(model, "0", x, k=4, units=[1, 2])])


@pytest.mark.parametrize("n", [0, 1, 7, 64, 100, 1001])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("align", [1, 4, 32])
def test_shard_range(n, world, align):
    shards = [shard_range(n, r, world, align=align) for r in range(world)]
    assert shards[0][0] == 0 and shards[-1][1] == n
    for (_, b0), (a1, _) in zip(shards, shards[1:]):
        assert b0 == a1
    for a, b in shards:
        assert a <= b
        assert a % align == 0 or a == n
    blocks = [-(-(b - a) // align) for a, b in shards]
    assert max(blocks) - min(blocks) <= 1


def test_shard_range_errors():
    with pytest.raises(ValueError):
        shard_range(10, 2, 2)
    with pytest.raises(ValueError):
        shard_range(10, 0, 0)
    with pytest.raises(ValueError):
        shard_range(10, 0, 2, align=0)


def test_all_gather_without_process_group_is_identity():
    result = mine_topk(mlp(), "0", randn(30, 20), k=4)
    assert all_gather_topk(result) is result


def _ddp_cases():
    """(model, layer, data, k, batch size, largest) mined by every process; shards align to batches."""
    return [
        (convnet(1), "1", randn(200, 3, 6, 5, seed=4), 16, 32, True),
        (mlp(2), "0", randn(40, 20, seed=5), 20, 8, True),  # shards of 24 and 16: one < k, padded
        (mlp(3), "0", randn(40, 20, seed=6), 50, 8, False),  # k > N: padding must be dropped
    ]


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = []
        for model, layer, x, k, bs, largest in _ddp_cases():
            # Shard boundaries at multiples of the batch size: each process sees exactly the
            # batches of the single-process pass, so the GEMMs (whose rounding can depend on
            # the batch) give bitwise-equal activations.
            start, stop = shard_range(x.shape[0], rank, world, align=bs)
            local = mine_topk(model, layer, x[start:stop], k=k, batch_size=bs, largest=largest, index_offset=start)
            results.append(all_gather_topk(local))
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    assert torch.get_num_threads() == 1  # as in the workers (fixture one_thread)
    expected = [
        mine_topk(model, layer, x, k=k, batch_size=bs, largest=largest)
        for model, layer, x, k, bs, largest in _ddp_cases()
    ]
    for rank in range(2):
        gathered = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for got, want in zip(gathered, expected):
            assert_topk_equal(got, want)
            assert got.requested_k == want.requested_k
    assert expected[0].positions is not None and expected[2].k == 40
