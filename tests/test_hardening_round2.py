"""Hardening, round 2: EXIF orientation, image-folder class names in the atlas, writing the atlas
(read-only run folders, ``out=`` a file, layer names that are not folder names), result files
holding Python objects, ``units`` strings in the Python API, and top-k ``k`` checks."""

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

from helpers import run_cli

# --- helpers --------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")


def _stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's one line on stderr, exit code 2, no traceback; returns that line."""
    lines = _stderr_lines(proc)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _digits(n: int = 64, seed: int = 0):
    """A small data set shaped like MNIST (uint8 images, labels 0-9)."""
    from interp.data.mnist import TensorImageDataset

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return TensorImageDataset(images, torch.arange(n) % 10)


def _mlp():
    from interp.models import MnistMLP

    torch.manual_seed(0)
    return MnistMLP(hidden=32).eval()


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A run of the project's MLP made by hand, as ``interp train`` leaves one: ``config.yaml`` (no
    data node: the atlas then needs no data set), ``checkpoints/last.ckpt`` and the top-k result
    the top-k step writes. Nothing is trained."""
    import lightning
    import yaml

    from interp.report import Reporter
    from interp.steps.topk import topk_examples

    run = tmp_path / "runs" / "mlp" / "2020-01-01_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    model = _mlp()
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        run / "checkpoints" / "last.ckpt",
    )
    config = {"model": {"_target_": "interp.models.MnistMLP", "hidden": 32}, "data": None}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        topk_examples(model, _digits(), Reporter(run), layer="dense_1", units=[0, 1, 2], k=4)
    assert (run / "interp" / "topk" / "dense_1" / "topk.pt").is_file()
    return run


def _atlas(run: Path, *extra: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    args = [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", *extra]
    return run_cli(["atlas", *args], _env(), run.parent, timeout=300, prefix=prefix)


# --- 1. EXIF orientation ----------------------------------------------------------------------------


def _blocks(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An asymmetric RGB picture of 8x8 blocks of random colours (JPEG keeps such blocks well)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1)


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo tagged Orientation=6 (camera turned: rotate 90 degrees clockwise to view)
    is loaded upright, by load_image and by the image-folder data set."""
    from interp.data.images import ImageFolderDataset, load_image

    stored = _blocks(32, 48)  # 32 high, 48 wide, as the sensor wrote it
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif)

    upright = np.rot90(stored, k=-1).astype(np.float32) / 255  # clockwise: 48 high, 32 wide
    image = load_image(path)
    assert image.shape == (3, 48, 32)
    got = image.permute(1, 2, 0).numpy()
    assert np.abs(got - upright).mean() < 0.02
    # and it is not merely transposed or turned the other way
    assert np.abs(got - np.rot90(stored, k=1).astype(np.float32) / 255).mean() > 0.1
    item, _ = ImageFolderDataset(tmp_path)[0]
    assert torch.equal(item, image)
    # without the tag nothing turns
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=100, subsampling=0)
    assert load_image(tmp_path / "plain.jpg").shape == (3, 32, 48)


# --- 2. image-folder labels in the atlas -----------------------------------------------------------


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


def _folder_atlas(tmp_path: Path, classes: list[str] | None) -> tuple[Path, dict]:
    from interp.atlas import build_atlas
    from interp.data.images import ImageFolderDataset
    from interp.report import Reporter
    from interp.steps.topk import topk_examples

    data = ImageFolderDataset(_image_folder(tmp_path / "photos", classes))
    run = tmp_path / "run"
    model = _folder_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        topk_examples(model, data, Reporter(run), layer="dense", units=[0, 1], k=4)
    saved = torch.load(run / "interp" / "topk" / "dense" / "topk.pt", weights_only=True)
    index = build_atlas(run, dataset=data, model=model, progress=False)
    return index.parent / "dense", saved


def test_atlas_labels_image_folder_examples_with_class_folder_names(tmp_path):
    from interp.data.images import ImageFolderDataset

    data = ImageFolderDataset(_image_folder(tmp_path / "check", ["cats", "dogs"]))
    assert data.classes == ["cats", "dogs"] and data.targets == [0, 0, 0, 1, 1, 1]

    layer, saved = _folder_atlas(tmp_path, ["cats", "dogs"])
    assert set(saved["labels"].flatten().tolist()) <= {0, 1}  # classes, not data set indices
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(layer.glob("*.html")))
    shown = set(re.findall(r"<span>label ([^<]*)</span>", text))
    assert shown and shown <= {"cats", "dogs"}, shown
    assert not re.search(r"label \d", text)
    options = re.findall(r'<option value="\d+">([^<]*)</option>', (layer / "index.html").read_text(encoding="utf-8"))
    assert options and set(options) <= {"cats", "dogs"}, options


def test_atlas_shows_no_labels_for_an_image_folder_without_classes(tmp_path):
    layer, saved = _folder_atlas(tmp_path, None)
    assert "labels" not in saved
    for page in sorted(layer.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        assert "<span>label " not in text and "majority label (" not in text, page.name
        assert 'id="filter-label"' not in text and "data-label=" not in text, page.name


# --- 3. writing the atlas ----------------------------------------------------------------------------


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
    line = _one_line_error(proc)
    assert str(run_folder / "atlas") in line and "out=<folder>" in line, line
    assert "ermission denied" in line, line
    # the way out works
    proc = _atlas(run_folder, f"out={run_folder.parent / 'elsewhere'}", prefix=prefix)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_folder.parent / "elsewhere" / "dense_1" / "unit_0002.html").is_file()


def test_atlas_out_an_existing_file_is_one_line(run_folder):
    target = run_folder.parent / "notes.txt"
    target.write_text("not a folder\n")
    line = _one_line_error(_atlas(run_folder, f"out={target}"))
    assert str(target) in line and "out=<folder>" in line and "file" in line, line
    assert target.read_text() == "not a folder\n"
    line = _one_line_error(_atlas(run_folder, f"out={target / 'below'}"))
    assert str(target / "below") in line and "out=<folder>" in line, line


def test_layer_folder_names_round_trip():
    from interp.atlas import layer_folder, layer_from_folder, result_name

    names = ["dense_1", "features.3", "layer3.0.conv1", "block/conv", "a\\b", "..", ".", ".hidden", "50%", "%2F", ""]
    for name in names:
        folder = layer_folder(name)
        assert layer_from_folder(folder) == name, (name, folder)
        assert "/" not in folder and "\\" not in folder and not folder.startswith(".") and folder, (name, folder)
    assert layer_folder("features.3") == "features.3"  # real module names keep their folders
    assert len({layer_folder(n) for n in names}) == len(names)
    assert result_name("topk/block/conv/topk.pt") == "topk/block%2Fconv/topk.pt"
    assert result_name("featvis/../featvis.pt") == "featvis/%2E./featvis.pt"


def test_atlas_finds_a_layer_whose_name_holds_a_slash(run_folder):
    """A result saved for a layer named ``block/conv`` is in the atlas under its real name, whether
    its folder is encoded (``block%2Fconv``) or, from older runs, nested (``block/conv``)."""
    from interp.atlas import layer_folder

    saved = torch.load(run_folder / "interp" / "topk" / "dense_1" / "topk.pt", weights_only=True)
    for name in ("block/conv", "old/nested"):
        folder = run_folder / "interp" / "topk" / (layer_folder(name) if name == "block/conv" else name)
        folder.mkdir(parents=True)
        torch.save(saved, folder / "topk.pt")
    proc = _atlas(run_folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = (run_folder / "atlas" / "index.html").read_text(encoding="utf-8")
    for name in ("dense_1", "block/conv", "old/nested"):
        assert f"<b>{name}</b>" in index, name
    pages = [p.parent.name for p in (run_folder / "atlas").glob("*/unit_0002.html")]
    assert len(pages) == 3, pages


def test_reporter_save_keeps_every_layer_name_in_one_folder_under_its_step(tmp_path):
    """What the steps save (``Reporter.save("<step>/<layer>/<step>.pt")``) is found again by the
    atlas under the same layer name, and nothing lands outside ``interp/<step>/``.
    Needs ``Reporter.save`` to write ``self.png_dir / result_name(name)`` (interp.report)."""
    from interp.atlas import load_results
    from interp.report import Reporter

    reporter = Reporter(tmp_path / "run")
    names = ["dense_1", "block/conv", "..", ".hidden"]
    for i, name in enumerate(names):
        reporter.save(f"topk/{name}/topk.pt", {"units": torch.tensor([i])})
    found = load_results(tmp_path / "run")
    assert sorted(found) == sorted(names)
    for i, name in enumerate(names):
        assert found[name]["topk"]["units"].tolist() == [i]
    files = sorted(p.relative_to(tmp_path / "run" / "interp").as_posix() for p in (tmp_path / "run").rglob("*.pt"))
    assert all(f.startswith("topk/") and f.count("/") == 2 for f in files), files


# --- 4. result files holding Python objects ------------------------------------------------------------


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
    line = _one_line_error(proc)
    assert str(bad) in line, line
    assert "weights_only" not in proc.stderr + proc.stdout, proc.stderr
    assert "Python object" in line, line
    assert not marker.exists()


# --- 5. units strings in the Python API ----------------------------------------------------------------


def _callbacks():
    from interp.callbacks import AttributionCheck, FeatureVisualization, TopKExamples, UnitPanel

    return [FeatureVisualization, TopKExamples, UnitPanel, AttributionCheck]


@pytest.mark.parametrize(
    ("units", "spelled"),
    [("0-7", "range(0, 8)"), ("0:64", "range(0, 64)"), ("3,7,32", "[3, 7, 32]"), ("5", "units=5"), ("all", "None")],
)
def test_units_string_is_refused_at_construction_with_the_python_spelling(units, spelled):
    from interp.callbacks.base import CallbackArgumentError
    from interp.errors import InterpError

    for cls in _callbacks():
        with pytest.raises(CallbackArgumentError) as exc:
            cls("dense_1", units=units)
        error = exc.value
        assert isinstance(error, InterpError) and isinstance(error, ValueError) and isinstance(error, TypeError)
        message = str(error)
        assert "\n" not in message and cls.__name__ in message, message
        assert f"units={units!r} is config syntax; in Python pass units=" in message, message
        assert spelled in message, message


def test_units_strings_that_are_not_config_syntax_and_later_assignments():
    from interp.callbacks import FeatureVisualization, TopKExamples
    from interp.callbacks.base import CallbackArgumentError

    with pytest.raises(CallbackArgumentError, match="is a string; in Python pass a unit number"):
        TopKExamples("dense_1", units="first eight")
    cb = FeatureVisualization("dense_1", units=range(0, 8))
    assert cb.units == range(0, 8)
    with pytest.raises(CallbackArgumentError, match=r"in Python pass units=range\(2, 4\)"):
        cb.units = "2-3"
    assert cb.units == range(0, 8)
    assert TopKExamples("dense_1").units is None and TopKExamples("dense_1", units=3).units == 3


# --- 6. top-k k --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "16"])
def test_topk_k_below_one_or_not_whole_is_one_line_at_construction(k):
    from interp.callbacks import TopKExamples
    from interp.callbacks.base import CallbackArgumentError
    from interp.errors import InterpError

    with pytest.raises(CallbackArgumentError, match=r"TopKExamples: k must be a whole number >= 1, got k=") as exc:
        TopKExamples("dense_1", k=k)
    assert isinstance(exc.value, InterpError) and isinstance(exc.value, ValueError)
    assert "\n" not in str(exc.value)


def test_topk_k_larger_than_the_data_is_clipped_with_one_warning_and_small_pictures(tmp_path):
    from interp.callbacks import TopKExamples
    from interp.report import Reporter
    from interp.steps.topk import PICTURE_LIMIT

    data = _digits(100)
    cb = TopKExamples("dense_1", units=[0, 1], k=100_000, bottom=True, progress=False, on_error="raise")
    cb.check(_mlp(), data)  # the data size is no reason to refuse: a folder of 3 photos with k=16 is fine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cb.apply(_mlp(), data, Reporter(tmp_path / "run"))
    about_k = [w for w in caught if "k=100000" in str(w.message)]
    assert len(about_k) == 1, [str(w.message) for w in caught]
    assert "100 examples" in str(about_k[0].message) and "\n" not in str(about_k[0].message)
    assert result.top.values.shape == (2, 100) and result.bottom.values.shape == (2, 100)
    saved = torch.load(tmp_path / "run" / "interp" / "topk" / "dense_1" / "topk.pt", weights_only=True)
    assert saved["indices"].shape == (2, 100)  # the result keeps every example
    pngs = sorted((tmp_path / "run" / "interp" / "topk" / "dense_1").rglob("unit_*.png"))
    assert len(pngs) == 4, pngs
    side = 8 * (28 + 2) + 2  # an 8 x 8 grid of 28 px digits with 2 px padding
    assert PICTURE_LIMIT == 64
    for png in pngs:
        with Image.open(png) as img:
            assert max(img.size) <= side, (png, img.size)
    # the atlas's unit pages show the best 64 too
    from interp.atlas import build_atlas

    index = build_atlas(tmp_path / "run", dataset=data, progress=False)
    page = (index.parent / "dense_1" / "unit_0001.html").read_text(encoding="utf-8")
    assert "Top 64 of 100 data set examples" in page and "Bottom 64 of 100 data set examples" in page
    assert page.count('<figure class="ex">') == 2 * 64


def test_topk_k_zero_on_the_command_line_is_one_line(run_folder):
    proc = run_cli(
        [
            "visualize",
            f"ckpt={run_folder / 'checkpoints' / 'last.ckpt'}",
            "callbacks=[topk]",
            "callbacks.topk.k=0",
            "units=[0]",
        ],
        _env(),
        run_folder.parent,
        timeout=300,
    )
    line = _one_line_error(proc)
    assert "k must be a whole number >= 1, got k=0" in line, line
