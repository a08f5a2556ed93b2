"""interp.report: one PNG encoding per picture, in TensorBoard and on disk; the ``Reporter``'s one private
TensorBoard call, file names of dotted layer names
(``tag_to_path``), and ``Reporter.save`` keeping every layer name in one folder under its step."""

from __future__ import annotations

import torch

from helpers import event_images
from interp.report import Reporter, tag_to_path


def test_the_reporters_one_private_tensorboard_call(tmp_path):
    """``SummaryWriter`` has no public method that writes a ready summary; the Reporter's one private call
    (``_get_file_writer``) is in ``event_file_writer``. This fails when torch renames or changes it."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.writer import FileWriter

    from interp.report import event_file_writer

    writer = SummaryWriter(tmp_path)
    try:
        events = event_file_writer(writer)
        assert isinstance(events, FileWriter) and callable(events.add_summary)
    finally:
        writer.close()
    assert event_file_writer(object()) is None  # other writers: add_image


def test_tag_to_path_keeps_the_dots(tmp_path):
    assert tag_to_path(tmp_path, "inversion/features.3") == tmp_path / "inversion" / "features.3.png"
    assert (
        tag_to_path(tmp_path, "dream/layer3.1.conv2/image_0") == tmp_path / "dream" / "layer3.1.conv2" / "image_0.png"
    )


def test_reporter_save_keeps_every_layer_name_in_one_folder_under_its_step(tmp_path):
    """What the steps save (``Reporter.save("<step>/<layer>/<step>.pt")``) is found again by the
    atlas under the same layer name, and nothing lands outside ``interp/<step>/``.
    Needs ``Reporter.save`` to write ``self.png_dir / result_name(name)`` (interp.report)."""
    from interp.atlas import load_results
    from interp.records import TopKRecord, save_record

    reporter = Reporter(tmp_path / "run")
    names = ["dense_1", "block/conv", "..", ".hidden"]
    for i, name in enumerate(names):
        save_record(reporter, name, TopKRecord([i], torch.ones(1, 2), torch.zeros(1, 2, dtype=torch.long)))
    found = load_results(tmp_path / "run")
    assert sorted(found) == sorted(names)
    for i, name in enumerate(names):
        assert found[name]["topk"].units == [i]
    files = sorted(p.relative_to(tmp_path / "run" / "interp").as_posix() for p in (tmp_path / "run").rglob("*.pt"))
    assert all(f.startswith("topk/") and f.count("/") == 2 for f in files), files


def test_reporter_writes_the_same_png_to_tensorboard_and_to_disk(tmp_path):
    """One encoding per picture: the event file's PNG and the file's are the same bytes, and they
    decode to the logged image rounded to 8 bits (with a description and without one)."""
    import io

    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 20, 33, generator=g)
    gray = torch.rand(1, 7, 9, generator=g)
    writer = SummaryWriter(tmp_path / "tb")
    reporter = Reporter(tmp_path, writer)
    colour = reporter.image("interp/check/colour", img, step=3, description="a colour picture")
    single = reporter.image("interp/check/gray", gray, step=4)
    writer.close()
    (events,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    logged = event_images(events)
    assert logged["interp/check/colour"] == [(3, colour.read_bytes())]
    assert logged["interp/check/gray"] == [(4, single.read_bytes())]
    decoded = np.asarray(Image.open(io.BytesIO(colour.read_bytes())).convert("RGB"))
    expected = (img.permute(1, 2, 0).numpy() * 255).round()
    assert decoded.shape == (20, 33, 3) and np.abs(decoded - expected).max() <= 0.5
    grey = np.asarray(Image.open(single).convert("RGB"))
    assert (grey[..., 0] == grey[..., 2]).all() and grey.shape == (7, 9, 3)
