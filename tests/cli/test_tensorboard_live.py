"""End to end with a live TensorBoard: `python -m interp train` writes a run (the session's shared
``trained_run``, tests/conftest.py), the real `tensorboard` server reads it, and its HTTP API serves our
images, scalars and the projector."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from tb_server import get, get_json, tensorboard_server, wait_for

pytestmark = pytest.mark.slow

N_PROJECTED = 300  # callbacks.projector.n of the shared trained_run
IMAGE_TAGS = (
    "topk/dense_1/unit_032",
    "featvis/dense_1/all",
    "featvis/dense_1/unit_032",
    "panel/dense_1/unit_032",
    "inversion/dense_1",
)
SCALAR_TAGS = ("inversion/dense_1/relative_error",)
HISTOGRAM_TAGS = (
    "featvis/dense_1/activation",
    "featvis/dense_1/ratio_to_dataset_max",
    "topk/dense_1/best_activation",
)


@pytest.fixture(scope="module")
def tb(trained_run):
    """(base URL, run name) of a live TensorBoard over the runs folder, as `tensorboard --logdir runs/`."""
    runs, run_dir = trained_run.runs_dir, trained_run.run_dir
    assert f"run:          {run_dir}" in trained_run.stdout
    run = run_dir.relative_to(runs).as_posix()  # mnist_mlp/<timestamp>
    with tensorboard_server(runs) as url:
        # the server answers before it has read the events; wait until our tags are there
        wait_for(
            lambda: set(IMAGE_TAGS) <= set(get_json(url, "/data/plugin/images/tags").get(run, {})),
            timeout=60,
            what="the image tags of the run",
        )
        yield url, run


def test_run_listed(tb):
    url, run = tb
    assert run in get_json(url, "/data/runs")


def test_image_tags_listed(tb):
    url, run = tb
    tags = get_json(url, "/data/plugin/images/tags")[run]
    for tag in IMAGE_TAGS:
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    for unit in (30, 31, 32):
        assert f"topk/dense_1/unit_{unit:03d}" in tags
        assert f"featvis/dense_1/unit_{unit:03d}" in tags
    assert not any(t.startswith("tsne/") for t in tags), "tsne=false still logged a t-SNE picture"


def test_tags_are_grouped_by_kind_and_described(tb):
    """The first path component is the kind, so TensorBoard shows one group per kind, and every
    image tag carries a description of what it shows."""
    url, run = tb
    tags = get_json(url, "/data/plugin/images/tags")[run]
    assert {t.split("/")[0] for t in tags} == {"topk", "featvis", "panel", "inversion", "attribution"}
    for tag, info in tags.items():
        assert len(info.get("description", "")) > 20, (tag, info)
    assert "dense_1 unit 32" in tags["panel/dense_1/unit_032"]["description"]


@pytest.mark.parametrize("tag", HISTOGRAM_TAGS)
def test_per_layer_histograms(tb, tag):
    url, run = tb
    assert tag in get_json(url, "/data/plugin/histograms/tags")[run]
    points = get_json(url, "/data/plugin/histograms/histograms", {"run": run, "tag": tag})
    assert len(points) == 1 and points[0][2], points


def test_unit_table_in_the_text_tab(tb):
    url, run = tb
    tag = "featvis/dense_1/table/text_summary"  # the suffix torch's add_text gives text tags
    assert tag in get_json(url, "/data/plugin/text/tags")[run]
    entries = get_json(url, "/data/plugin/text/text", {"run": run, "tag": tag})
    html = entries[0]["text"]
    assert "<table>" in html and "top-k majority label" in html and ">32<" in html


def _fetch_image(url, run, tag) -> tuple[Image.Image, bytes]:
    entries = get_json(url, "/data/plugin/images/images", {"run": run, "tag": tag})
    assert len(entries) == 1, entries
    body, ctype = get(url, "/data/plugin/images/individualImage?" + entries[0]["query"])
    assert ctype.startswith("image/png"), ctype
    img = Image.open(io.BytesIO(body))
    img.load()
    return img, body


@pytest.mark.parametrize(
    "tag",
    [
        "panel/dense_1/unit_032",
        "topk/dense_1/unit_032",
        "featvis/dense_1/unit_032",
        "inversion/dense_1",
    ],
)
def test_image_served_as_written(tb, trained_run, tag):
    """The image TensorBoard serves is a PNG of the size of the run's PNG file, with the same pixels
    up to TensorBoard's 8-bit quantization (it truncates, the PNG writer rounds)."""
    url, run = tb
    served, body = _fetch_image(url, run, tag)
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert served.format == "PNG"
    png = trained_run.run_dir / "interp" / (tag + ".png")
    assert png.is_file(), png
    written = Image.open(png)
    assert served.size == written.size
    a = np.asarray(served.convert("RGB"), dtype=np.int16)
    b = np.asarray(written.convert("RGB"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1


def test_panel_size(tb):
    """The panel is wide (examples grid | optimized input side by side) and at least 256 px high."""
    url, run = tb
    served, _ = _fetch_image(url, run, "panel/dense_1/unit_032")
    w, h = served.size
    assert h >= 256 and w > h


def test_projector(tb):
    url, run = tb
    assert run in get_json(url, "/data/plugin/projector/runs")
    info = get_json(url, "/data/plugin/projector/info", {"run": run})
    embeddings = info["embeddings"]
    assert len(embeddings) == 1, embeddings
    emb = embeddings[0]
    assert emb["tensorName"].startswith("projector/dense_2")
    assert [int(d) for d in emb["tensorShape"]] == [N_PROJECTED, 512]
    assert [int(d) for d in emb["sprite"]["singleImageDim"]] == [28, 28]

    params = {"run": run, "name": emb["tensorName"]}
    body, _ = get(url, "/data/plugin/projector/tensor", params)
    tensor = np.frombuffer(body, dtype="<f4")
    assert tensor.size == N_PROJECTED * 512
    assert np.isfinite(tensor).all() and tensor.std() > 0
    metadata, _ = get(url, "/data/plugin/projector/metadata", params)
    labels = metadata.decode().split()
    assert len(labels) == N_PROJECTED and set(labels) <= set("0123456789")
    sprite, ctype = get(url, "/data/plugin/projector/sprite_image", params)
    assert ctype.startswith("image/png")
    side = math.ceil(math.sqrt(N_PROJECTED)) * 28
    assert Image.open(io.BytesIO(sprite)).size == (side, side)


@pytest.mark.parametrize("tag", SCALAR_TAGS)
def test_scalars(tb, trained_run, tag):
    url, run = tb
    assert tag in get_json(url, "/data/plugin/scalars/tags")[run]
    points = get_json(url, "/data/plugin/scalars/scalars", {"run": run, "tag": tag})
    assert len(points) == 1, points
    _wall, step, value = points[0]
    last = torch.load(trained_run.ckpt, map_location="cpu", weights_only=True)
    assert step == last["global_step"]  # logged at the trainer's global step, where Lightning's own scalars are
    assert math.isfinite(value)
