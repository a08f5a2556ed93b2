"""The algorithms on every device this machine has: the CPU always, CUDA when present (the CUDA
cases skip with a reason elsewhere; `make gpu-check` runs them on a GPU machine). A result on a
device must match the CPU's within float tolerance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.optvis import dream, invert, mine_topk, render_units
from interp.steps.featvis import FeatVisSettings, ViewRun, render_view

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
    ),
]


def convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU()).eval()


@pytest.mark.parametrize("device", DEVICES)
def test_render_units_follows_the_model_device(device):
    model = convnet().to(device)
    result = render_units(model, "2", [0, 3], shape=(3, 24, 24), steps=16, seed=0)
    assert result.image.device.type == "cpu" and result.image.shape == (2, 3, 24, 24)
    reference = render_units(convnet(), "2", [0, 3], shape=(3, 24, 24), steps=16, seed=0)
    assert torch.allclose(result.activations, reference.activations, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_topk_dream_invert_on_the_device(device):
    model = convnet().to(device)
    data = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    top = mine_topk(model, "2", data, k=4, batch_size=16)
    assert torch.equal(top.indices, mine_topk(convnet(), "2", data, k=4, batch_size=16).indices)
    dreamed = dream(model, data[0], "2", octaves=2, steps_per_octave=2, roll=2)
    assert dreamed.image.shape == (1, 3, 16, 16) and 0 <= dreamed.image.min() <= dreamed.image.max() <= 1
    assert invert(model, "0", data[:2], steps=8).image.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("max_batch", [None, 2])
def test_chunks_give_the_images_of_one_batch(device, max_batch):
    """max_batch splits the units into chunks; every unit is seeded from (seed, unit), so the
    images equal one batch's up to float rounding: the matrix kernels a library picks may depend
    on the batch size (bitwise equality holds for the MLP shapes of the DDP and visualize tests)."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 12), nn.ReLU(), nn.Linear(12, 6)).eval()
    for model, layer in ((mlp, "3"), (convnet(), "2")):
        model = model.to(device)
        settings = FeatVisSettings(shape=(3, 16, 16), seed=0, steps=8, kind="channel", transforms="default")
        one = render_view(model, layer, [0, 1, 2, 3, 4], "plain", settings)
        chunked = render_view(model, layer, [0, 1, 2, 3, 4], "plain", settings.replace(max_batch=max_batch))
        assert torch.allclose(one.image, chunked.image, atol=1e-5 if device == "cpu" else 1e-4)


class FakeMemory:
    """A MemoryMeter with fixed readings: every unit takes ``per_unit`` bytes, ``free`` are free."""

    def __init__(self, per_unit: int, free: int):
        self.per_unit, self.free_bytes, self.resets = per_unit, free, 0
        self.last_chunk = 0

    def reset(self) -> None:
        self.resets += 1

    def peak(self) -> int:
        return self.per_unit * self.last_chunk

    def free(self) -> int:
        return self.free_bytes


def _recording_render(monkeypatch, meter: FakeMemory | None = None, fail_above: int | None = None) -> list[int]:
    """Replace the render_units that render_view calls by one that records the chunk sizes in units
    (and raises CUDA's out-of-memory error for chunks larger than ``fail_above``)."""
    import interp.steps.render_views as featvis

    sizes: list[int] = []
    real = featvis.render_units

    def recording(model, layer, units, **kwargs):
        n = len(dict.fromkeys(units))  # units, not rows: a batch is padded with copies of its last unit
        sizes.append(n)
        if meter is not None:
            meter.last_chunk = n
        if fail_above is not None and n > fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, layer, units, **kwargs)

    monkeypatch.setattr(featvis, "render_units", recording)
    return sizes


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 24), nn.ReLU(), nn.Linear(24, 20)).eval()


SETTINGS = FeatVisSettings(shape=(3, 8, 8), seed=0, steps=4, kind="channel", transforms=None)


def test_memory_probe_sizes_the_chunks(monkeypatch):
    """max_batch=None with a memory meter: a probing chunk of 8 units, then chunks that fill 80% of
    the free memory at the measured bytes per unit (100 bytes a unit, 1000 free: 8 a chunk)."""
    model, units = _mlp(), list(range(20))
    one = render_view(model, "3", units, "plain", SETTINGS)
    meter = FakeMemory(per_unit=100, free=1000)
    sizes = _recording_render(monkeypatch, meter)
    probed = render_view(model, "3", units, "plain", SETTINGS, run=ViewRun(memory=meter))
    assert sizes == [8, 8, 4] and meter.resets == 1
    assert torch.allclose(one.image, probed.image, atol=1e-5) and probed.units == units
    sizes.clear()
    meter.free_bytes = 400  # 3 units fit in 80% of 400 bytes
    render_view(model, "3", units, "plain", SETTINGS, run=ViewRun(memory=meter))
    assert sizes == [8, 3, 3, 3, 3]
    sizes.clear()
    render_view(model, "3", units, "plain", SETTINGS.replace(max_batch=6), run=ViewRun(memory=FakeMemory(100, 10**9)))
    assert sizes == [6, 6, 6, 2]  # a given max_batch is not probed


def test_out_of_memory_halves_the_chunk(monkeypatch):
    """A chunk that runs out of memory is rendered again at half the size; the images stay those
    of one batch. Without a meter (the CPU, or a given max_batch without one) the error is raised."""
    model, units = _mlp(), list(range(12))
    one = render_view(model, "3", units, "plain", SETTINGS)
    sizes = _recording_render(monkeypatch, FakeMemory(per_unit=1, free=10**9), fail_above=3)
    retried = render_view(model, "3", units, "plain", SETTINGS, run=ViewRun(memory=FakeMemory(per_unit=1, free=10**9)))
    assert sizes == [8, 4, 2, 2, 2, 2, 2, 2]
    assert torch.allclose(one.image, retried.image, atol=1e-5)
    with pytest.raises(torch.OutOfMemoryError):
        render_view(model, "3", units, "plain", SETTINGS.replace(max_batch=6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_memory_meter_and_probe():
    from interp.optvis.memory import CudaMemory, memory_meter

    model = _mlp().cuda()
    meter = memory_meter(model)
    assert isinstance(meter, CudaMemory)
    meter.reset()
    x = torch.zeros(1024, 1024, device="cuda")  # 4 MiB
    assert meter.peak() >= 4 * 2**20 and meter.free() > 0
    del x
    units = list(range(20))
    probed = render_view(model, "3", units, "plain", SETTINGS)  # max_batch=None on CUDA: probed chunks
    one = render_view(model, "3", units, "plain", SETTINGS.replace(max_batch=20))
    assert torch.allclose(one.image, probed.image, atol=1e-4)
