"""What the atlas reads and writes: image-folder class names as labels, a read-only run folder and ``out=`` a
file (one line each), layer names that are not folder names, and result files holding Python objects (refused in
one line). ``run_folder`` (tests/conftest.py) is a run made by hand; nothing is trained."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import one_line_error, run_cli
from interp.records import TopKRecord, read_record


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")


def _atlas(run: Path, *extra: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    args = [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", *extra]
    return run_cli(["atlas", *args], _env(), run.parent, timeout=300, prefix=prefix)


# --- image-folder labels in the atlas -----------------------------------------------------------


def _image_folder(root: Path, classes: list[str] | None, per_class: int = 3) -> Path:
    rng = np.random.default_rng(1)
    for name in classes or [""]:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return root


def _folder_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(flat=nn.Flatten(), dense=nn.Linear(3 * 16 * 16, 4))).eval()


def _folder_atlas(tmp_path: Path, classes: list[str] | None) -> tuple[Path, TopKRecord]:
    from interp.atlas import build_atlas
    from interp.data.images import ImageFolderDataset
    from interp.report import Reporter
    from interp.steps.topk import TopKSettings, topk_examples

    data = ImageFolderDataset(_image_folder(tmp_path / "photos", classes))
    run = tmp_path / "run"
    model = _folder_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        topk_examples(model, data, Reporter(run), "dense", TopKSettings(k=4), units=[0, 1])
    saved = read_record(run / "interp" / "topk" / "dense" / "topk.pt", "topk")
    index = build_atlas(run, dataset=data, model=model, progress=False)
    return index.parent / "dense", saved


def test_atlas_labels_image_folder_examples_with_class_folder_names(tmp_path):
    from interp.data.images import ImageFolderDataset

    data = ImageFolderDataset(_image_folder(tmp_path / "check", ["cats", "dogs"]))
    assert data.classes == ["cats", "dogs"] and data.targets == [0, 0, 0, 1, 1, 1]

    layer, saved = _folder_atlas(tmp_path, ["cats", "dogs"])
    assert set(saved.labels.flatten().tolist()) <= {0, 1}  # classes, not data set indices
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(layer.glob("*.html")))
    shown = set(re.findall(r"<span>label ([^<]*)</span>", text))
    assert shown and shown <= {"cats", "dogs"}, shown
    assert not re.search(r"label \d", text)
    options = re.findall(r'<option value="\d+">([^<]*)</option>', (layer / "index.html").read_text(encoding="utf-8"))
    assert options and set(options) <= {"cats", "dogs"}, options


def test_atlas_shows_no_labels_for_an_image_folder_without_classes(tmp_path):
    layer, saved = _folder_atlas(tmp_path, None)
    assert saved.labels is None
    for page in sorted(layer.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        assert "<span>label " not in text and "majority label (" not in text, page.name
        assert 'id="filter-label"' not in text and "data-label=" not in text, page.name


# --- writing the atlas ----------------------------------------------------------------------------


def _without_root_powers() -> list[str]:
    """A command prefix that takes root's power to write anywhere away (root ignores file modes)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_atlas_in_a_read_only_run_folder_is_one_line(run_folder):
    prefix = _without_root_powers()
    run_folder.chmod(0o555)
    try:
        proc = _atlas(run_folder, prefix=prefix)
    finally:
        run_folder.chmod(0o755)
    line = one_line_error(proc)
    assert str(run_folder / "atlas") in line and "out=<folder>" in line, line
    assert "ermission denied" in line, line
    # the way out works
    proc = _atlas(run_folder, f"out={run_folder.parent / 'elsewhere'}", prefix=prefix)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_folder.parent / "elsewhere" / "dense_1" / "unit_0002.html").is_file()


def test_atlas_out_an_existing_file_is_one_line(run_folder):
    target = run_folder.parent / "notes.txt"
    target.write_text("not a folder\n")
    line = one_line_error(_atlas(run_folder, f"out={target}"))
    assert str(target) in line and "out=<folder>" in line and "file" in line, line
    assert target.read_text() == "not a folder\n"
    line = one_line_error(_atlas(run_folder, f"out={target / 'below'}"))
    assert str(target / "below") in line and "out=<folder>" in line, line


def test_layer_folder_names_round_trip():
    from interp.atlas import layer_folder, layer_from_folder, result_name

    names = ["dense_1", "features.3", "layer3.0.conv1", "block/conv", "a\\b", "..", ".", ".hidden", "50%", "%2F", ""]
    for name in names:
        folder = layer_folder(name)
        assert layer_from_folder(folder) == name, (name, folder)
        assert "/" not in folder and "\\" not in folder and not folder.startswith(".") and folder, (name, folder)
    assert len({layer_folder(n) for n in names}) == len(names)
    assert result_name("featvis/../featvis.pt") == "featvis/%2E./featvis.pt"


def test_atlas_finds_a_layer_whose_name_holds_a_slash(run_folder):
    """A result saved for a layer named ``block/conv`` is in the atlas under its real name, whether
    its folder is encoded (``block%2Fconv``) or, from older runs, nested (``block/conv``)."""
    from interp.atlas import layer_folder

    source = run_folder / "interp" / "topk" / "dense_1" / "topk.pt"
    for name in ("block/conv", "old/nested"):
        folder = run_folder / "interp" / "topk" / (layer_folder(name) if name == "block/conv" else name)
        folder.mkdir(parents=True)
        shutil.copyfile(source, folder / "topk.pt")
    proc = _atlas(run_folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = (run_folder / "atlas" / "index.html").read_text(encoding="utf-8")
    for name in ("dense_1", "block/conv", "old/nested"):
        assert f"<b>{name}</b>" in index, name
    pages = [p.parent.name for p in (run_folder / "atlas").glob("*/unit_0002.html")]
    assert len(pages) == 3, pages


# --- result files holding Python objects ------------------------------------------------------------


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", ["system", "path"])
def test_atlas_refuses_a_result_file_with_python_objects_in_one_line(run_folder, payload):
    marker = run_folder.parent / "marker"
    evil = _Evil(marker) if payload == "system" else Path("/etc")
    bad = run_folder / "interp" / "featvis" / "dense_1" / "featvis.pt"
    bad.parent.mkdir(parents=True)
    torch.save({"units": torch.tensor([0]), "extra": evil}, bad)
    proc = _atlas(run_folder)
    line = one_line_error(proc)
    assert str(bad) in line, line
    assert "weights_only" not in proc.stderr + proc.stdout, proc.stderr
    assert "Python object" in line, line
    assert not marker.exists()
