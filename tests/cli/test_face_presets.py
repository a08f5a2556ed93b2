"""``visualize preset=face`` and ``preset=face_expression``: the trained face-api.js networks through the CLI
(weights from ``$INTERP_DATA_DIR/face-api``), their pictures, captions and the missing-weights error."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from helpers import REPO, event_images, run_cli

EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


def _env(data_dir: Path, cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE")
    env.pop("INTERP_DEBUG", None)
    env.update(INTERP_DATA_DIR=str(data_dir), INTERP_CACHE_DIR=str(cache_dir))
    return env


def _run(args: list[str], root: Path, tmp_path: Path) -> Path:
    result = run_cli(["visualize", *args], _env(root, tmp_path / "empty_cache"), tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "face-api.js weights (@vladmandic/face-api 1.7.15)" in result.stdout, result.stdout
    (run,) = [p for p in (tmp_path / "runs" / "visualize").iterdir() if p.is_dir()]
    return run


def _descriptions(run: Path) -> dict[str, str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return {tag: acc.SummaryMetadata(tag).summary_description for tag in acc.Tags()["tensors"]}


def _text(run: Path, prefix: str) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
    acc.Reload()
    tags = [t for t in acc.Tags()["tensors"] if acc.SummaryMetadata(t).plugin_data.plugin_name == "text"]
    (tag,) = [t for t in tags if t.startswith(prefix)]
    (event,) = acc.Tensors(tag)
    return event.tensor_proto.string_val[0].decode()


@pytest.mark.slow
def test_face_preset_dreams_at_layer1_and_renders_its_channels(face_root, tmp_path):
    args = ["preset=face", "size=128", "octaves=2", "steps_per_octave=3", "steps=8", "units=0-3"]
    run = _run(args, face_root, tmp_path)
    for name in ("dream/layer1.png", "dream/layer1/image_0.png", "featvis/layer1/all.png"):
        assert (run / "interp" / name).is_file(), sorted(run.rglob("*.png"))
    assert sorted(p.name for p in (run / "interp" / "featvis" / "layer1").glob("unit_*.png")) == [
        f"unit_{u:03d}.png" for u in range(4)
    ]
    images = event_images(next(run.glob("events.out.tfevents.*")))
    assert {"dream/layer1", "featvis/layer1/unit_000"} <= set(images), sorted(images)
    config = (run / "config.yaml").read_text()
    assert "interp.models.faceapi.face_recognition" in config and "layer: layer1" in config


@pytest.mark.slow
def test_face_expression_preset_captions_every_picture_with_its_probability(face_root, tmp_path):
    from interp.records import read_record

    args = ["preset=face_expression", "steps=4", "callbacks.expressions.accentuate_steps=4"]
    run = _run(args, face_root, tmp_path)
    folder = run / "interp" / "expressions"
    assert (folder / "fc.png").is_file()
    for kind in ("rendered", "accentuated"):
        assert sorted(p.stem for p in (folder / "fc" / kind).glob("*.png")) == sorted(EXPRESSIONS)
    saved = read_record(folder / "fc" / "expressions.pt")
    face_probs = saved.face_probs
    assert int(face_probs.argmax()) == EXPRESSIONS.index("happy"), face_probs  # she smiles
    assert torch.allclose(face_probs.sum(), torch.tensor(1.0), atol=1e-5)

    descriptions = _descriptions(run)
    for kind, probs in (("rendered", saved.rendered_probs), ("accentuated", saved.accentuated_probs)):
        for c, name in enumerate(EXPRESSIONS):
            text = descriptions[f"expressions/fc/{kind}/{name}"]
            found = re.search(rf"p\({name}\) = ([0-9.]+) \(the face: ([0-9.]+)\)", text)
            assert found, text
            assert float(found.group(1)) == pytest.approx(float(probs[c, c]), abs=6e-4), text
            assert float(found.group(2)) == pytest.approx(float(face_probs[c]), abs=6e-4), text
    summary = descriptions["expressions/fc"]
    assert f"happy {float(face_probs[1]):.2f}" in summary, summary
    table = _text(run, "expressions/fc/table")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == "| picture | " + " | ".join(EXPRESSIONS) + " |"
    assert [r.split("|")[1].strip() for r in rows[1:]] == [
        "face",
        *(f"rendered {n}" for n in EXPRESSIONS),
        *(f"accentuated {n}" for n in EXPRESSIONS),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["face", "face_expression"])
def test_missing_face_weights_is_one_line_naming_make_face_weights(preset, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(["visualize", f"preset={preset}"], _env(empty, empty), tmp_path, timeout=300)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr + result.stdout, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("interp visualize: error: face-api weights "), lines[0]
    assert "make face-weights" in lines[0], lines[0]
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.glob("*/*") if p.is_dir()], sorted(runs.rglob("*"))


def test_presets_override_the_visualize_defaults():
    """A preset's settings win over visualize.yaml's own (``_self_`` comes first in its defaults)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        face = compose("visualize", overrides=["preset=face"])
        vgg = compose("visualize", overrides=["preset=vggface2", "model.weights=random"])
        expression = compose("visualize", overrides=["preset=face_expression"])
    assert (face.layer, list(face.views), face.tv_weight, face.l1_weight) == ("layer1", ["plain"], 0.0, 0.0)
    assert face.model.weights is None and face.model.resize is False
    assert sorted(face.callbacks) == ["dream", "featvis"]
    assert (vgg.layer, list(vgg.views), vgg.tv_weight, vgg.l1_weight) == ("layer3", ["plain"], 0.0, 0.0)
    assert (expression.layer, sorted(expression.callbacks)) == ("fc", ["expressions"])


def test_the_face_network_with_every_interpretation_on_a_folder_of_faces(face_root, tmp_path):
    """FaceRecognitionNet through top-k on a user's folder of face crops, feature visualization,
    attribution (with its scores) and the atlas, sharing one store as visualize does."""
    from PIL import Image, ImageOps

    from interp.atlas import build_atlas
    from interp.callbacks import AttributionCheck, FeatureVisualization, TopKExamples
    from interp.data.images import ImageFolderDataset
    from interp.models.faceapi import FaceRecognitionNet
    from interp.report import Reporter
    from interp.store import ResultStore

    photo = Image.open(face_root / "images" / "astronaut.png").convert("RGB")
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, dx in enumerate((0, 12, 24)):
        crop = photo.crop((150 + dx, 40, 350 + dx, 240)).resize((150, 150))
        crop.save(folder / f"face{i}.png")
        ImageOps.mirror(crop).save(folder / f"mirror{i}.png")
    data = ImageFolderDataset(folder)
    model = FaceRecognitionNet.from_weights(face_root / "face-api").eval()
    run, store = tmp_path / "run", ResultStore()
    reporter = Reporter(run)
    units = [0, 3]
    topk = TopKExamples("layer2", units=units, k=3, progress=False, on_error="raise")
    featvis = FeatureVisualization("layer2", units=units, steps=4, shape=(3, 150, 150), progress=False)
    attribution = AttributionCheck(
        "layer2", units=units, k=2, ig_steps=4, n_check=4, check_units=1, sanity_check=False, score_units=1
    )
    for cb in (topk, featvis, attribution):
        cb.apply(model, data, reporter, store=store)
    assert topk.result.top.indices.shape == (2, 3)
    assert featvis.result.renderings["plain"].image.shape == (2, 3, 150, 150)
    assert attribution.result.grad_maxdiff <= 1e-4
    index = build_atlas(run, dataset=data, model=model, progress=False)
    page = (index.parent / "layer2" / "unit_0000.html").read_text()  # unit 0: the one scored
    assert "img/plain/" in page and "deletion AUC" in page
