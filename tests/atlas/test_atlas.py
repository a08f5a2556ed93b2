"""The unit atlas (interp.atlas) and the Normalized model wrapper (interp.models.normalized).

Browser tests open the pages in a real headless Chromium (tests/browser.py, installed by
scripts/install_chromium.sh). They are skipped only where Chromium is missing and ``CI`` is
unset; in CI a missing browser fails them.
"""

from __future__ import annotations

import re
import resource
import time
from pathlib import Path

import pytest
import torch
from browser import check_page
from torch import nn

from interp.atlas import build_atlas, diverging, load_results, png_bytes
from interp.data.mnist import TensorImageDataset
from interp.errors import InterpError
from interp.models.normalized import IMAGENET_MEAN, IMAGENET_STD, Normalized, looks_like_torchvision_classifier
from interp.records import AttributionRecord, FeatVisRecord, TemplatesRecord, TopKRecord, read_record, save_record
from interp.report import Reporter

# --- synthetic results --------------------------------------------------------------------------


def smooth_images(n: int, c: int, size: int, g: torch.Generator, coarse: int = 7) -> torch.Tensor:
    """Random smooth pictures in [0, 1]: coarse noise upsampled (they look like blurry blobs)."""
    x = torch.rand(n, c, coarse, coarse, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    x = x - x.amin((1, 2, 3), keepdim=True)
    return x / x.amax((1, 2, 3), keepdim=True).clamp(min=1e-6)


def synthetic_dataset(n: int = 300, size: int = 28, seed: int = 0) -> TensorImageDataset:
    g = torch.Generator().manual_seed(seed)
    imgs = (smooth_images(n, 1, size, g, coarse=5) ** 2 * 255).round().to(torch.uint8)
    return TensorImageDataset(imgs, torch.randint(0, 10, (n,), generator=g))


def write_results(
    run: Path,
    layer: str,
    units,
    n_data: int,
    k: int = 8,
    size: int = 28,
    channels: int = 1,
    views=("plain", "prior"),
    conv: bool = False,
    bottom: bool = True,
    hist: bool = True,
    attribution: bool = False,
    templates: bool = False,
    seed: int = 0,
) -> None:
    """Result files of the interpretation steps (records written by ``save_record``), filled with random values."""
    g = torch.Generator().manual_seed(seed)
    reporter = Reporter(run)
    units = list(units)
    U = len(units)
    fv = FeatVisRecord(units)
    for i, v in enumerate(views):
        fv.images[v] = smooth_images(U, channels, size, g)
        fv.activations[v] = torch.rand(U, generator=g) * 10 + 5 * i
    save_record(reporter, layer, fv)

    perm = torch.stack([torch.randperm(n_data, generator=g)[: 2 * k] for _ in range(U)])
    values = (torch.rand(U, k, generator=g) * 5 + 3).sort(1, descending=True).values
    positions = torch.randint(0, 12, (U, k, 2), generator=g) if conv else None
    tk = TopKRecord(units, values, perm[:, :k], positions)
    if bottom:
        tk.bottom_values = -(torch.rand(U, k, generator=g) * 3).sort(1, descending=True).values
        tk.bottom_indices = perm[:, k:]
    if hist:
        bins = 40
        lo, hi = tk.bottom_values[:, 0] if tk.bottom_values is not None else torch.full((U,), -3.0), values[:, 0]
        tk.hist_edges = torch.stack([torch.linspace(float(a), float(b), bins + 1) for a, b in zip(lo, hi)])
        centre = torch.linspace(-1, 1, bins)
        tk.hist = (n_data * torch.exp(-4 * (centre + 0.3) ** 2)).round().expand(U, -1).clone()
    save_record(reporter, layer, tk)

    if attribution:
        ka = 4
        examples = smooth_images(U * ka, channels, size, g).reshape(U, ka, channels, size, size)
        maps = {m: torch.randn(U, ka, size, size, generator=g) for m in ("ig", "saliency")}
        save_record(reporter, layer, AttributionRecord(units, examples, maps))
    if templates:
        w = smooth_images(U, channels, size, g) * 2 - 1
        save_record(reporter, layer, TemplatesRecord(units, w))


class TinyNet(nn.Module):
    """conv1 (6 channels, 5x5) -> pool -> dense_1 (12) -> dense_2 (10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(4)
        self.flatten = nn.Flatten()
        self.dense_1 = nn.Linear(6 * 6 * 6, 12)
        self.dense_2 = nn.Linear(12, 10)

    def forward(self, x):
        return self.dense_2(torch.relu(self.dense_1(self.flatten(self.pool(torch.relu(self.conv1(x)))))))


def rf_box(layer, pos):
    """Receptive field of conv1 (5x5, stride 1) at (row, col)."""
    r, c = pos
    return r, c, r + 5, c + 5


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """A run with a dense layer (all result kinds) and a conv layer (positions, crops)."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    data = synthetic_dataset(300)
    write_results(run, "dense_1", range(12), len(data), attribution=True, templates=True)
    write_results(run, "conv1", [0, 2, 3, 5], len(data), views=("plain",), conv=True, seed=1)
    index = build_atlas(run, dataset=data, model=TinyNet(), progress=False, crop_box=rf_box)
    return index


# --- static checks (no browser) ---------------------------------------------------------------

_REF = re.compile(r'(?:href|src)="([^"]+)"')


def _local_refs(page: Path) -> list[str]:
    return [r for r in _REF.findall(page.read_text(encoding="utf-8")) if not r.startswith(("#", "http:", "https:"))]


def test_atlas_layout_and_links(atlas):
    out = atlas.parent
    assert atlas == out / "index.html" and out.name == "atlas"
    pages = sorted(out.rglob("*.html"))
    names = {p.relative_to(out).as_posix() for p in pages}
    assert {
        "index.html",
        "dense_1/index.html",
        "conv1/index.html",
        "dense_1/unit_0000.html",
        "dense_1/unit_0011.html",
        "conv1/unit_0005.html",
    } <= names
    assert len(pages) == 3 + 12 + 4
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "data:" not in text and "://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        for ref in _local_refs(page):
            assert (page.parent / ref).resolve().exists(), f"{page.relative_to(out)} links to missing {ref}"
    # examples are shared: one file per data set index, not per unit
    examples = [p for p in (out / "examples").iterdir() if re.fullmatch(r"\d+\.png", p.name)]
    top = read_record(out.parent / "interp/topk/dense_1/topk.pt")
    top2 = read_record(out.parent / "interp/topk/conv1/topk.pt")
    used = set(
        torch.cat(
            [
                top.indices.flatten(),
                top.bottom_indices.flatten(),
                top2.indices.flatten(),
                top2.bottom_indices.flatten(),
            ]
        ).tolist()
    )
    assert len(examples) == len(used)
    # conv layer: receptive-field crops of 5x5 pixels
    crops = [p for p in (out / "examples").iterdir() if "_" in p.name]
    assert crops
    from PIL import Image

    assert all(Image.open(p).size == (5, 5) for p in crops)


def test_unit_page_content(atlas):
    out = atlas.parent
    page = (out / "dense_1" / "unit_0003.html").read_text(encoding="utf-8")
    for title in (
        "Feature visualizations",
        "Top 8 data set examples",
        "Bottom 8 data set examples",
        "Activation over the data set",
        "Weight template",
        "Attributions",
        "Nearest units by weight",
    ):
        assert title in page, title
    assert 'rel="prev" href="unit_0002.html"' in page and 'rel="next" href="unit_0004.html"' in page
    assert "<svg" in page and 'class="legend"' in page
    first = (out / "dense_1" / "unit_0000.html").read_text(encoding="utf-8")
    assert 'rel="prev"' not in first and "first unit" in first
    # conv page: crop beside the full image with a box
    conv = (out / "conv1" / "unit_0002.html").read_text(encoding="utf-8")
    assert 'class="box"' in conv and "receptive field" in conv


def test_layer_page_columns(atlas):
    page = (atlas.parent / "dense_1" / "index.html").read_text(encoding="utf-8")
    for key in ("act-plain", "ratio-plain", "act-prior", "dmax", "purity"):
        assert f'value="{key}"' in page and f"data-{key}=" in page
    assert 'id="filter-label"' in page
    assert page.count('class="card"') == 12


def test_extra_per_unit_numbers_become_sort_columns(tmp_path):
    run = tmp_path / "run"
    write_results(run, "fc", range(4), 30, k=3, views=("plain",))
    fv = read_record(run / "interp/featvis/fc/featvis.pt")
    assert isinstance(fv, FeatVisRecord)
    fv.columns["legibility"] = torch.tensor([0.1, 0.9, 0.5, 0.3])
    save_record(Reporter(run), "fc", fv)
    build_atlas(run, progress=False)
    page = (run / "atlas/fc/index.html").read_text(encoding="utf-8")
    assert 'value="x-featvis-legibility"' in page and ">legibility</option>" in page
    assert 'data-unit="1" data-act-plain' in page and 'data-x-featvis-legibility="0.9"' in page


def test_nearest_units_are_weight_cosine(tmp_path):
    run = tmp_path / "run"
    write_results(run, "dense_1", range(12), 50, k=4, views=("plain",))
    model = TinyNet()
    with torch.no_grad():  # unit 7 is a scaled copy of unit 2: cosine 1
        model.dense_1.weight[7] = 3 * model.dense_1.weight[2]
    build_atlas(run, dataset=synthetic_dataset(50), model=model, progress=False)
    page = (run / "atlas" / "dense_1" / "unit_0002.html").read_text(encoding="utf-8")
    near = page[page.index("Nearest units by weight") :]
    assert re.search(r'href="unit_0007.html">.*?unit 7<span class="sim">cosine 1.00', near)


def test_build_without_dataset_or_model(tmp_path):
    run = tmp_path / "run"
    write_results(run, "dense_1", range(5), 100, k=4, hist=False, bottom=False)
    index = build_atlas(run, progress=False)
    unit = (index.parent / "dense_1" / "unit_0001.html").read_text(encoding="utf-8")
    assert "Top 4 data set examples" in unit and "Nearest units" not in unit
    assert not (index.parent / "examples").exists() or not any((index.parent / "examples").iterdir())


def test_build_topk_only_uses_examples_as_thumbnails(tmp_path):
    run = tmp_path / "run"
    write_results(run, "fc", range(3), 40, k=4)
    (run / "interp" / "featvis" / "fc" / "featvis.pt").unlink()
    index = build_atlas(run, dataset=synthetic_dataset(40), out_dir=tmp_path / "site", progress=False)
    assert index == tmp_path / "site" / "index.html"
    layer = (index.parent / "fc" / "index.html").read_text(encoding="utf-8")
    assert 'src="../examples/' in layer


def test_no_results_is_a_user_error(tmp_path):
    with pytest.raises(InterpError, match="no interpretation results"):
        build_atlas(tmp_path, progress=False)


def test_load_results_and_diverging(tmp_path):
    write_results(tmp_path, "a.b", range(2), 20, k=2)
    res = load_results(tmp_path)
    assert set(res) == {"a.b"} and set(res["a.b"]) == {"featvis", "topk"}
    from io import BytesIO

    import numpy as np
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (4, 3, 3), dtype=np.uint8)
    for arr in (np.arange(35, dtype=np.uint8).reshape(5, 7), rgb):
        back = np.asarray(Image.open(BytesIO(png_bytes(arr))))
        assert back.shape == arr.shape and (back == arr).all()
    c = diverging(torch.tensor([[-2.0, 0.0, 2.0]]), 2.0)
    assert torch.allclose(c[:, 0, 1], torch.ones(3))
    assert c[2, 0, 0] > c[0, 0, 0] and c[0, 0, 2] > c[2, 0, 2]  # blue for negative, red for positive


# --- Normalized -------------------------------------------------------------------------------


def test_normalized_normalizes_and_names_layers():
    inner = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    model = Normalized(inner, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])
    x = torch.rand(2, 3, 2, 2)
    mean, std = torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1), torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    expect = inner((x - mean) / std)
    assert torch.allclose(model(x), expect)
    names = dict(model.named_modules())
    assert "model.1" in names and names["model.1"] is inner[1]
    assert model.get_submodule("model.1") is inner[1]
    assert model.model is inner


def test_normalized_imagenet_and_device():
    inner = nn.Conv2d(3, 2, 1)
    m = Normalized.imagenet(inner)
    assert torch.allclose(m.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(m.std.flatten(), torch.tensor(IMAGENET_STD))
    m = m.double()  # buffers follow the module, like parameters
    assert m(torch.rand(1, 3, 4, 4, dtype=torch.float64)).dtype == torch.float64
    assert set(dict(m.named_buffers())) == {"mean", "std"}


def test_normalized_rejects_bad_stats():
    with pytest.raises(ValueError):
        Normalized(nn.Identity(), mean=[0.5, 0.5], std=[0.5])
    with pytest.raises(ValueError):
        Normalized(nn.Identity(), mean=[0.5], std=[0.0])


def test_looks_like_torchvision_classifier():
    tv = pytest.importorskip("torchvision")
    resnet = tv.models.resnet18(weights=None, num_classes=4)
    assert looks_like_torchvision_classifier(resnet)
    assert not looks_like_torchvision_classifier(Normalized.imagenet(resnet))
    assert not looks_like_torchvision_classifier(TinyNet())
    assert not looks_like_torchvision_classifier(nn.Sequential(nn.Linear(2, 2)))


# --- in a real browser ----------------------------------------------------------------------------


@pytest.mark.slow
def test_browser_pages_load_cleanly(atlas, browser):
    root = atlas.parent
    check_page(browser, atlas, root, min_images=0)
    check_page(browser, root / "dense_1" / "index.html", root, min_images=12)
    check_page(browser, root / "dense_1" / "unit_0003.html", root, min_images=20)
    check_page(browser, root / "conv1" / "unit_0002.html", root, min_images=16)


@pytest.mark.slow
def test_browser_keyboard_navigation(atlas, browser):
    root = atlas.parent
    browser.open(root / "dense_1" / "unit_0003.html")
    assert browser.press("ArrowRight").endswith("/dense_1/unit_0004.html")
    assert browser.press("ArrowLeft").endswith("/dense_1/unit_0003.html")
    browser.open(root / "dense_1" / "unit_0011.html")  # the last unit: nothing to go to
    assert browser.press("ArrowRight", wait_navigation=False).endswith("/dense_1/unit_0011.html")
    assert browser.console_errors() == []


@pytest.mark.slow
def test_browser_layer_sort_and_filter(atlas, browser):
    browser.open(atlas.parent / "dense_1" / "index.html")
    order = (
        "Array.from(document.querySelectorAll('#unit-grid .card')).filter(c => c.style.display !== 'none')"
        ".map(c => +c.dataset.unit)"
    )
    assert browser.evaluate(order) == list(range(12))
    browser.evaluate(
        "const s = document.getElementById('sort-by'); s.value = 'act-plain';s.dispatchEvent(new Event('change'))"
    )
    acts = read_record(atlas.parent.parent / "interp/featvis/dense_1/featvis.pt").activations["plain"]
    assert browser.evaluate(order) == acts.argsort(descending=True).tolist()
    label = browser.evaluate("document.querySelector('#filter-label option:nth-child(2)').value")
    browser.evaluate(
        f"const f = document.getElementById('filter-label'); f.value = '{label}';f.dispatchEvent(new Event('change'))"
    )
    shown = browser.evaluate(order)
    assert shown and len(shown) < 12
    assert all(
        browser.evaluate(f"document.querySelector('.card[data-unit=\"{u}\"]').dataset.label") == label for u in shown
    )
    assert "showing" in browser.evaluate("document.getElementById('shown-count').textContent")
    assert browser.console_errors() == []


# --- budget -----------------------------------------------------------------------------------


def _tree_size(root: Path) -> tuple[int, int, int]:
    """(files, apparent bytes, allocated bytes) under ``root``."""
    files = apparent = blocks = 0
    for p in root.rglob("*"):
        if p.is_file():
            st = p.stat()
            files += 1
            apparent += st.st_size
            blocks += st.st_blocks * 512
    return files, apparent, blocks


@pytest.mark.slow
def test_budget_512_units_with_mnist(tmp_path, mnist_root):
    """A layer of 512 units (two views, top-16 and bottom-16 each, histograms) over the 60,000
    MNIST training digits builds in <= 30 s into <= 50 MB."""
    from interp.data import load_mnist

    x, y = load_mnist(mnist_root, train=True, download=False)
    data = TensorImageDataset(x, y)
    run = tmp_path / "run"
    write_results(run, "dense_1", range(512), len(data), k=16, views=("plain", "prior"))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    index = build_atlas(run, dataset=data, progress=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    files, apparent, allocated = _tree_size(index.parent)
    print(
        f"\natlas of 512 units: {seconds:.1f} s ({cpu:.1f} s CPU), {files} files, {apparent / 1e6:.1f} MB "
        f"({allocated / 1e6:.1f} MB on disk), peak RSS grew by "
        f"{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1e3:.0f} MB"
    )
    assert seconds <= 30
    assert apparent <= 50e6


def test_thumbnails_default_to_the_most_legible_view():
    from interp.atlas.build import thumbnail_views

    assert thumbnail_views(["plain", "prototype", "prior"]) == ["prototype", "prior", "plain"]
    assert thumbnail_views(["plain", "custom"]) == ["plain", "custom"]


@pytest.mark.slow
def test_browser_layer_thumbnails_show_the_legible_view_and_switch(atlas, browser):
    """The dense layer has plain and prior views: the grid shows prior first (the legible one), and
    the Thumbnails switch shows plain instead; the unit pages keep every view."""
    browser.open(atlas.parent / "dense_1" / "index.html")
    visible = (
        "Array.from(document.querySelectorAll('#unit-grid .card img'))"
        ".filter(i => i.offsetParent !== null).map(i => i.dataset.view)"
    )
    assert set(browser.evaluate(visible)) == {"prior"} and len(browser.evaluate(visible)) == 12
    assert browser.evaluate("document.getElementById('thumb-view').value") == "prior"
    browser.evaluate(
        "const t = document.getElementById('thumb-view'); t.value = 'plain'; t.dispatchEvent(new Event('change'))"
    )
    assert set(browser.evaluate(visible)) == {"plain"}
    loaded = "Array.from(document.querySelectorAll('#unit-grid .card img')).every(i => i.naturalWidth > 0)"
    assert browser.evaluate(loaded)
    assert "the prior view (the most legible" in browser.evaluate("document.querySelector('.lead').textContent")
    page = (atlas.parent / "dense_1" / "unit_0003.html").read_text()
    assert "img/plain/" in page and "img/prior/" in page
    assert browser.console_errors() == []
