"""Result files of dotted layer names never collide, and top-k refuses data in a random order."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from interp.optvis import mine_topk
from interp.report import Reporter, tag_to_path
from interp.steps import deep_dream, embedding_projector, inversion


def dotted_net() -> nn.Module:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    return nn.Sequential(features, nn.Flatten(), nn.Linear(4 * 12 * 12, 3)).eval()


def test_tag_to_path_keeps_the_dots(tmp_path):
    assert tag_to_path(tmp_path, "inversion/features.3") == tmp_path / "inversion" / "features.3.png"
    assert (
        tag_to_path(tmp_path, "dream/layer3.1.conv2/image_0") == tmp_path / "dream" / "layer3.1.conv2" / "image_0.png"
    )


def test_two_dotted_layers_in_one_run_leave_two_files_for_every_kind(tmp_path):
    model = dotted_net()
    images = torch.rand(64, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(images, torch.arange(64) % 3)
    reporter = Reporter(tmp_path)
    for layer in ("0.0", "0.2"):
        inversion(model, data, reporter, layer=layer, n_examples=2, steps=2)
        deep_dream(model, reporter, layer=layer, images=images[:1], size=None, octaves=1, steps_per_octave=1, roll=0)
        embedding_projector(model, data, reporter, layer=layer, n=64, tsne=True)
    root = tmp_path / "interp"
    for kind in ("inversion", "dream", "tsne"):
        assert (root / kind / "0.0.png").is_file() and (root / kind / "0.2.png").is_file(), kind
        assert (root / kind / "0.0.png").read_bytes() != (root / kind / "0.2.png").read_bytes(), kind


def test_top_k_refuses_a_shuffled_loader():
    model = dotted_net()
    data = TensorDataset(torch.rand(20, 1, 12, 12), torch.zeros(20))
    with pytest.raises(ValueError, match="fixed order"):
        mine_topk(model, "0.0", DataLoader(data, batch_size=4, shuffle=True), k=2)
    assert mine_topk(model, "0.0", DataLoader(data, batch_size=4), k=2).indices.shape == (4, 2)


def test_remove_failed_run_removes_only_what_this_process_made(tmp_path):
    from interp.runs import created_here, make_run_dir, remove_failed_run

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("x: 1")
    assert not created_here(mine) and not remove_failed_run(mine) and (mine / "config.yaml").is_file()

    run = make_run_dir(tmp_path / "runs" / "exp", "stamp")
    assert created_here(run) and created_here(tmp_path / "runs") and not created_here(tmp_path)
    (run / ".hydra").mkdir()
    for name in ("config.yaml", ".hydra/config.yaml", ".hydra/overrides.yaml", "cli.log"):
        (run / name).write_text("bookkeeping")
    assert remove_failed_run(run)
    assert not (tmp_path / "runs").exists() and tmp_path.is_dir(), "the parents made for the run go too"


@pytest.mark.parametrize("extra", ["events.out.tfevents.1", "checkpoints/last.ckpt", "interp/x.png", "user.txt"])
def test_remove_failed_run_keeps_a_run_holding_anything_else(tmp_path, extra):
    from interp.runs import make_run_dir, remove_failed_run

    run = make_run_dir(tmp_path / "runs", "stamp")
    (run / "config.yaml").write_text("x: 1")
    (run / extra).parent.mkdir(parents=True, exist_ok=True)
    (run / extra).write_text("kept")
    assert not remove_failed_run(run)
    assert (run / extra).read_text() == "kept" and (run / "config.yaml").is_file()


def test_remove_failed_run_keeps_a_folder_replaced_since(tmp_path):
    """A folder removed and made again by someone else is not the folder this process created."""
    from interp.runs import make_run_dir, remove_failed_run

    run = make_run_dir(tmp_path, "stamp")
    run.rmdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere").rename(run)
    assert not remove_failed_run(run) and run.is_dir()


@pytest.mark.parametrize("with_summary", [False, True])
def test_an_events_file_counts_as_a_result_only_when_it_holds_a_summary(tmp_path, with_summary):
    """A run that failed right after its logger opened (the events file holds its header only) is
    removed; one that logged anything stays."""
    from torch.utils.tensorboard import SummaryWriter

    from interp.runs import make_run_dir, remove_failed_run

    run = make_run_dir(tmp_path / "runs", "stamp")
    (run / "config.yaml").write_text("x: 1")
    writer = SummaryWriter(str(run))
    if with_summary:
        writer.add_scalar("loss", 1.0, 0)
    writer.close()
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert remove_failed_run(run) is not with_summary
    assert run.exists() is with_summary
