"""The interpretation callbacks under DDP (2 CPU processes, gloo) give what one process gives.

A small script (written to tmp_path) trains MnistMLP with the same fixed weights and a learning
rate of zero, so both runs interpret identical weights; once with one process and once with
``strategy="ddp", devices=2`` (Lightning re-launches the script for rank 1). Then:

* the top-k values and indices are bit-for-bit those of the single-process run, on both ranks;
* only rank zero wrote: one events file (from rank zero's process), rank one's reporters wrote
  nothing, and the PNG files are the same set as in the single-process run;
* the PNG images and the images inside the events are pixel-equal to the single-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow

SUBSET = 3000  # 3 blocks of 1024: rank 0 mines [0, 2048), rank 1 [2048, 3000) (a partial batch)

SCRIPT = textwrap.dedent('''
    """Train MnistMLP with fixed weights and lr=0, run the interpretation callbacks, save results."""
    import json
    import os
    import sys
    from pathlib import Path

    import torch

    torch.set_num_threads(1)

    import lightning.pytorch as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from interp.callbacks import AttributionCheck, DeepDream, FeatureVisualization, Inversion, TopKExamples, UnitPanel
    from interp.data import MNISTDataModule
    from interp.models import MnistMLP
    from interp.report import Reporter

    root, weights, devices, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])

    # keep every Reporter the callbacks create, to see afterwards what each rank wrote
    reporters = []
    _for_trainer = Reporter.for_trainer.__func__

    def for_trainer(cls, trainer):
        reporter = _for_trainer(cls, trainer)
        reporters.append(reporter)
        return reporter

    Reporter.for_trainer = classmethod(for_trainer)

    # and the part each rank mined before the exchange (the shard it covered)
    import interp.steps.topk as topk_module

    gathered = []
    _all_gather_topk = topk_module.all_gather_topk

    def all_gather_topk(part, *args, **kwargs):
        gathered.append([int(part.indices.min()), int(part.indices.max())])
        return _all_gather_topk(part, *args, **kwargs)

    topk_module.all_gather_topk = all_gather_topk

    L.seed_everything(0, verbose=False)
    model = MnistMLP(lr=0.0)  # the optimizer steps, the weights stay the given ones
    model.load_state_dict(torch.load(weights, weights_only=True))
    datamodule = MNISTDataModule(root=root, subset=int(os.environ["SUBSET"]), download=False)
    topk = TopKExamples(layer="dense_1", units=[30, 31, 32], k=16, progress=False, on_error="raise")
    # three units: under DDP rank zero renders two and rank one renders one (sharded by unit)
    featvis = FeatureVisualization(layer="dense_1", units=[30, 31, 32], steps=16, progress=False, on_error="raise")
    panel = UnitPanel(layer="dense_1", units=[32], steps=16, on_error="raise")
    attribution = AttributionCheck(layer="dense_1", units=[30, 31, 32], k=4, ig_steps=8, n_check=8,
                                   on_error="raise")
    # three examples and three images: rank zero takes two, rank one one
    inversion = Inversion(layer="dense_1", n_examples=3, steps=8, on_error="raise", progress=False)
    photos = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    deepdream = DeepDream(layer="dense_2", images=photos, size=None, octaves=1, steps_per_octave=2, roll=2,
                          on_error="raise", progress=False)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(save_dir=str(out), name="", version="", default_hp_metric=False),
        callbacks=[topk, featvis, panel, attribution, inversion, deepdream],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, datamodule=datamodule)

    rank = trainer.global_rank
    result = topk.result.top
    images = featvis.result.renderings["plain"].image
    torch.save({"values": result.values, "indices": result.indices, "units": result.units, "featvis": images,
                "weights": model.state_dict()}, out / f"rank{rank}.pt")
    info = {
        "rank": rank,
        "world_size": trainer.world_size,
        "pid": os.getpid(),
        "gathered": gathered,
        "reporters_enabled": [r.enabled for r in reporters],
        "written": [str(p) for r in reporters for p in r.written],
        "panel_paths": {str(u): (None if p is None else str(p)) for u, p in panel.result.items()},
    }
    (out / f"rank{rank}.json").write_text(json.dumps(info))
''')


def _run(script: Path, root: Path, weights: Path, devices: int, out: Path) -> None:
    out.mkdir()
    env = dict(
        os.environ,
        SUBSET=str(SUBSET),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        MASTER_ADDR="127.0.0.1",
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(root), str(weights), str(devices), str(out)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, (
        f"{devices}-process run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_root, trained_mlp):
    """Output folders of the single-process run and of the 2-process DDP run. Not the shared ``trained_run``
    (tests/conftest.py): both runs must interpret the same fixed weights under a learning rate of zero, once
    with one process and once with two, which a script of its own does (see the module's docstring)."""
    tmp = tmp_path_factory.mktemp("ddp")
    weights = tmp / "weights.pt"
    torch.save(trained_mlp.state_dict(), weights)
    script = tmp / "interp_ddp.py"
    script.write_text(SCRIPT)
    single, ddp = tmp / "single", tmp / "ddp"
    _run(script, mnist_root, weights, 1, single)
    _run(script, mnist_root, weights, 2, ddp)
    return single, ddp


def _info(out: Path, rank: int) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def _pngs(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in sorted((out / "interp").rglob("*.png"))}


def _events(out: Path) -> list[Path]:
    return sorted(out.rglob("events.out.tfevents.*"))


def _image_summaries(event_file: Path) -> dict[str, bytes]:
    from helpers import event_images

    return {tag: events[-1][1] for tag, events in event_images(event_file).items()}


def test_ddp_really_ran(runs):
    single, ddp = runs
    assert _info(single, 0)["world_size"] == 1
    infos = [_info(ddp, r) for r in (0, 1)]
    assert [i["world_size"] for i in infos] == [2, 2]
    assert infos[0]["pid"] != infos[1]["pid"]
    # each rank mined its own shard once (UnitPanel reused the result) and exchanged it
    assert _info(single, 0)["gathered"] == []
    ((lo0, hi0),) = infos[0]["gathered"]
    ((lo1, hi1),) = infos[1]["gathered"]
    assert 0 <= lo0 <= hi0 < 2048 <= lo1 <= hi1 < SUBSET


def test_same_weights(runs):
    """Precondition of the comparisons: every process interpreted the very same weights."""
    single, ddp = runs
    ref = torch.load(single / "rank0.pt", weights_only=True)["weights"]
    for rank in (0, 1):
        got = torch.load(ddp / f"rank{rank}.pt", weights_only=True)["weights"]
        for name, tensor in ref.items():
            assert torch.equal(got[name], tensor), f"rank {rank}: {name} differs"


@pytest.mark.parametrize("rank", [0, 1])
def test_topk_bitwise_equal(runs, rank):
    single, ddp = runs
    ref = torch.load(single / "rank0.pt", weights_only=True)
    got = torch.load(ddp / f"rank{rank}.pt", weights_only=True)
    assert torch.equal(got["units"], ref["units"])
    assert got["values"].dtype == ref["values"].dtype == torch.float32
    assert got["values"].shape == ref["values"].shape == (3, 16)
    # bit for bit, not just equal as floats
    assert torch.equal(got["values"].view(torch.int32), ref["values"].view(torch.int32))
    assert torch.equal(got["indices"], ref["indices"])
    # both shards contribute (else the test would not exercise the merge)
    assert (ref["indices"] < 2048).any() and (ref["indices"] >= 2048).any()
    assert ref["indices"].max() < SUBSET


def test_featvis_bitwise_equal(runs):
    """Rank zero rendered units 30 and 31, rank one unit 32: each unit's image does not depend on
    the batch it was rendered in, and both ranks gathered all three."""
    single, ddp = runs
    ref = torch.load(single / "rank0.pt", weights_only=True)["featvis"]
    for rank in (0, 1):
        assert torch.equal(torch.load(ddp / f"rank{rank}.pt", weights_only=True)["featvis"], ref)


def test_only_rank_zero_wrote(runs):
    single, ddp = runs
    r0, r1 = _info(ddp, 0), _info(ddp, 1)
    # rank one's reporters were disabled and wrote nothing
    assert r1["reporters_enabled"] and not any(r1["reporters_enabled"])
    assert r1["written"] == [] and r1["panel_paths"] == {"32": None}
    assert r0["reporters_enabled"] and all(r0["reporters_enabled"])
    assert r0["panel_paths"]["32"] is not None
    # every PNG on disk was written by rank zero, once, and they are the single-process set
    pngs = _pngs(ddp)
    assert sorted(Path(p).relative_to(ddp).as_posix() for p in r0["written"]) == sorted(pngs)
    assert sorted(pngs) == sorted(_pngs(single))
    assert "interp/panel/dense_1/unit_032.png" in pngs
    # one events file, from rank zero's process (the name ends in .<pid>.<n>)
    events = _events(ddp)
    assert len(events) == 1, [e.name for e in events]
    assert int(events[0].name.split(".")[-2]) == r0["pid"]
    assert len(_events(single)) == 1


def test_events_hold_the_same_images(runs):
    single, ddp = runs
    ref = _image_summaries(_events(single)[0])
    got = _image_summaries(_events(ddp)[0])
    expected = {
        "topk/dense_1/unit_030",
        "topk/dense_1/unit_031",
        "topk/dense_1/unit_032",
        *(f"featvis/dense_1/unit_{u:03d}" for u in (30, 31, 32)),
        "featvis/dense_1/all",
        "panel/dense_1/unit_032",
        *(f"attribution/dense_1/unit_{u:03d}" for u in (30, 31, 32)),
        "inversion/dense_1",
        "dream/dense_2",
        *(f"dream/dense_2/image_{i}" for i in range(3)),
    }
    assert set(ref) == expected
    assert set(got) == expected
    for tag in expected:
        assert got[tag] == ref[tag], f"{tag}: the encoded image differs from the single-process run"


def test_pngs_pixel_equal(runs):
    single, ddp = runs
    ref, got = _pngs(single), _pngs(ddp)
    assert ref
    for name, path in ref.items():
        a, b = Image.open(path), Image.open(got[name])
        assert a.size == b.size, name
        assert np.array_equal(np.asarray(a), np.asarray(b)), f"{name}: pixels differ from the single-process run"


def test_rank_with_empty_shard(tmp_path, mnist_small, trained_mlp, monkeypatch):
    """With fewer batches than ranks (1,000 examples, batch 1024, 2 ranks) rank one's shard is empty;
    it must still take part in the exchange instead of failing (and so stalling rank zero).

    Run in this process as rank one of a two-rank trainer over a one-process gloo group, where
    ``all_gather_topk`` hands back the rank's own part."""
    import torch.distributed as dist

    import interp.steps.topk as topk
    from interp.data.mnist import TensorImageDataset
    from interp.steps.topk import mine

    x, y = mnist_small
    dataset = TensorImageDataset((x[:1000] * 255).round().to(torch.uint8), y[:1000])
    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=(tmp_path / "store").as_uri(), rank=0, world_size=1)
    try:
        monkeypatch.setattr(topk, "distributed", lambda: (1, 2))  # rank one of two
        part = mine(trained_mlp, "dense_1", [30, 31, 32], 16, dataset, 1024)
    finally:
        dist.destroy_process_group()
    assert part.units.tolist() == [30, 31, 32]
    assert part.indices.numel() == 0  # nothing of its own to contribute
