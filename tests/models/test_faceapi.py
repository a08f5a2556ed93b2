"""The TensorFlow.js weight reader and the face-api ports (recognition and expression nets).

The ports are compared with outputs of the original JavaScript (``tests/fixtures/
faceapi_reference.npz``, made by ``scripts/faceapi_reference.py``), so these tests need no Node.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers import REPO
from interp.errors import DataNotFoundError, InterpError
from interp.models.faceapi import (
    FACE_API_SHA256,
    FaceExpressionNet,
    FaceRecognitionNet,
    Scale,
    find_manifest,
)
from interp.models.tfjs import TfjsWeights, WeightsFormatError, read_manifest

FIXTURE = REPO / "tests" / "fixtures" / "faceapi_reference.npz"
REC_MANIFEST = "face_recognition_model-weights_manifest.json"
EXP_MANIFEST = "face_expression_model-weights_manifest.json"


@pytest.fixture(scope="module")
def recognition(faceapi_dir) -> FaceRecognitionNet:
    return FaceRecognitionNet.from_weights(faceapi_dir)


@pytest.fixture(scope="module")
def expression(faceapi_dir) -> FaceExpressionNet:
    return FaceExpressionNet.from_weights(faceapi_dir)


@pytest.fixture(scope="module")
def reference():
    data = np.load(FIXTURE, allow_pickle=False)
    images = {k[len("img_") :]: data[k] for k in data.files if k.startswith("img_")}
    cases = json.loads(str(data["cases"]))
    return data, images, cases


def _inputs(images: dict[str, np.ndarray], case: dict) -> list[torch.Tensor]:
    """The case's images as (1, 3, H, W) float tensors in [0, 1] (exactly what the JavaScript got, / 255)."""
    out = []
    for spec in case["inputs"]:
        image = images[spec["image"]]
        image = np.ascontiguousarray(image[:, ::-1] if spec["flip"] else image)
        out.append(torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None])
    return out


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.strip()
    assert isinstance(exc.value, InterpError)
    return message


# ------------------------------------------------------------------------------------------------
# (a) the reader, on hand-made manifests


def _write(folder: Path, entries: list[tuple[dict, bytes]], trailing: bytes = b"", shards: int = 1) -> Path:
    """A manifest with one group: the entries' specs, their bytes split over ``shards`` files."""
    blob = b"".join(data for _, data in entries) + trailing
    cut = np.linspace(0, len(blob), shards + 1).astype(int)
    paths = []
    for i in range(shards):
        name = f"model.shard{i + 1}of{shards}.bin"
        (folder / name).write_bytes(blob[cut[i] : cut[i + 1]])
        paths.append(name)
    manifest = folder / "model-weights_manifest.json"
    manifest.write_text(json.dumps([{"paths": paths, "weights": [spec for spec, _ in entries]}]))
    return manifest


def _entries() -> tuple[list[tuple[dict, bytes]], dict[str, np.ndarray]]:
    """One tensor of each stored kind, with the values TensorFlow.js would decode."""
    f32 = np.array([[1.5, -2.25, 3.0], [0.1, 1e-8, -7.0]], dtype=np.float32)
    q8 = np.array([0, 1, 128, 255], dtype=np.uint8)
    q16 = np.array([0, 1, 40000, 65535], dtype=np.uint16)
    f16 = np.array([0.5, -1.25, 65504.0, 1e-3], dtype=np.float16)
    i32 = np.array([7, -3], dtype=np.int32)
    s8, m8, s16, m16 = 0.0123, -1.5, 1e-4, -2.0
    entries: list[tuple[dict, bytes]] = [
        ({"name": "a/f32", "shape": [2, 3], "dtype": "float32"}, f32.astype("<f4").tobytes()),
        (
            {
                "name": "b/q8",
                "shape": [2, 2],
                "dtype": "float32",
                "quantization": {"dtype": "uint8", "scale": s8, "min": m8},
            },
            q8.tobytes(),
        ),
        (
            {
                "name": "c/q16",
                "shape": [4],
                "dtype": "float32",
                "quantization": {"dtype": "uint16", "scale": s16, "min": m16},
            },
            q16.astype("<u2").tobytes(),
        ),
        (
            {"name": "d/f16", "shape": [1, 4], "dtype": "float32", "quantization": {"dtype": "float16"}},
            f16.astype("<f2").tobytes(),
        ),
        ({"name": "e/i32", "shape": [2], "dtype": "int32"}, i32.astype("<i4").tobytes()),
    ]
    expected: dict[str, np.ndarray] = {
        "a/f32": f32,
        "b/q8": (q8.astype(np.float64) * s8 + m8).astype(np.float32).reshape(2, 2),
        "c/q16": (q16.astype(np.float64) * s16 + m16).astype(np.float32),
        "d/f16": f16.astype(np.float32).reshape(1, 4),
        "e/i32": i32,
    }
    return entries, expected


@pytest.mark.parametrize("shards", [1, 3])
def test_reader_decodes_every_storage_kind(tmp_path, shards):
    entries, expected = _entries()
    specs, arrays = read_manifest(_write(tmp_path, entries, shards=shards))
    assert [s.name for s in specs] == list(expected)
    for name, want in expected.items():
        assert arrays[name].dtype == want.dtype and arrays[name].shape == want.shape
        np.testing.assert_array_equal(arrays[name], want)
    # uint8 / uint16: q * scale + min, computed as TensorFlow.js does (double, then float32)
    assert arrays["b/q8"][1, 1] == np.float32(255 * 0.0123 - 1.5)
    assert arrays["d/f16"][0, 2] == 65504.0


def test_reader_truncated_shard(tmp_path):
    entries, _ = _entries()
    manifest = _write(tmp_path, entries)
    shard = tmp_path / "model.shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:-3])
    with pytest.raises(WeightsFormatError) as exc:
        read_manifest(manifest)
    message = _one_line(exc)
    assert "truncated" in message and "model.shard1of1.bin" in message and "'e/i32'" in message


def test_reader_trailing_bytes(tmp_path):
    entries, _ = _entries()
    with pytest.raises(WeightsFormatError) as exc:
        read_manifest(_write(tmp_path, entries, trailing=b"\0" * 5, shards=2))
    message = _one_line(exc)
    assert "5 trailing bytes" in message and "model.shard2of2.bin" in message


def test_reader_missing_unused_and_misshaped_tensors(tmp_path):
    entries, _ = _entries()
    weights = TfjsWeights.open(_write(tmp_path, entries))
    with pytest.raises(WeightsFormatError) as exc:
        weights.take("z/absent", (2,))
    assert "'z/absent' is missing" in _one_line(exc)
    with pytest.raises(WeightsFormatError) as exc:
        weights.take("a/f32", (3, 2))
    assert "'a/f32' has shape [2, 3], the module expects [3, 2]" in _one_line(exc)
    for name, shape in [("a/f32", (2, 3)), ("b/q8", (2, 2)), ("c/q16", (4,))]:
        weights.take(name, shape)
    with pytest.raises(WeightsFormatError) as exc:
        weights.finish()
    message = _one_line(exc)
    assert "2 tensor(s) not used" in message and "'d/f16'" in message and "'e/i32'" in message


def test_reader_checksum_and_malformed_entries(tmp_path):
    entries, _ = _entries()
    manifest = _write(tmp_path, entries)
    good = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    read_manifest(manifest, good)
    bad = dict(good, **{"model.shard1of1.bin": "0" * 64})
    with pytest.raises(WeightsFormatError) as exc:
        read_manifest(manifest, bad)
    message = _one_line(exc)
    assert "model.shard1of1.bin" in message and "checksum mismatch" in message
    with pytest.raises(WeightsFormatError) as exc:
        read_manifest(manifest, {k: v for k, v in good.items() if k.endswith(".json")})
    assert "no known SHA-256" in _one_line(exc)

    spec = json.loads(manifest.read_text())
    spec[0]["weights"][1]["quantization"] = {"dtype": "uint4", "scale": 1, "min": 0}
    manifest.write_text(json.dumps(spec))
    with pytest.raises(WeightsFormatError) as exc:
        read_manifest(manifest)
    assert "'b/q8'" in _one_line(exc) and "unknown quantization" in str(exc.value)
    spec[0]["weights"][1] = spec[0]["weights"][0]
    manifest.write_text(json.dumps(spec))
    with pytest.raises(WeightsFormatError) as exc:
        read_manifest(manifest)
    assert "listed twice" in _one_line(exc)
    spec = json.loads(json.dumps([{"paths": ["../escape.bin"], "weights": [entries[0][0]]}]))
    manifest.write_text(json.dumps(spec))
    with pytest.raises(WeightsFormatError) as exc:
        read_manifest(manifest)
    assert "'..'" in _one_line(exc)


def _copy_expression(faceapi_dir: Path, folder: Path) -> tuple[Path, list]:
    for name in (EXP_MANIFEST, "face_expression_model.bin"):
        shutil.copyfile(faceapi_dir / name, folder / name)
    return folder / EXP_MANIFEST, json.loads((folder / EXP_MANIFEST).read_text())


def test_module_load_is_strict(faceapi_dir, tmp_path):
    manifest, spec = _copy_expression(faceapi_dir, tmp_path)
    shard = tmp_path / "face_expression_model.bin"
    blob = shard.read_bytes()
    assert spec[0]["weights"][-1]["name"] == "fc/bias"  # 7 unquantized float32 values, last in the shard

    # a missing tensor: drop fc/bias and its 28 bytes
    (tmp_path / "missing").mkdir()
    missing = [{**spec[0], "weights": spec[0]["weights"][:-1]}]
    (tmp_path / "missing" / EXP_MANIFEST).write_text(json.dumps(missing))
    (tmp_path / "missing" / shard.name).write_bytes(blob[:-28])
    with pytest.raises(WeightsFormatError) as exc:
        FaceExpressionNet.from_weights(tmp_path / "missing", verify=False)
    assert "'fc/bias' is missing" in _one_line(exc)

    # an unused tensor: one more float32 tensor at the end
    (tmp_path / "extra").mkdir()
    extra = [{**spec[0], "weights": [*spec[0]["weights"], {"name": "fc/extra", "shape": [2], "dtype": "float32"}]}]
    (tmp_path / "extra" / EXP_MANIFEST).write_text(json.dumps(extra))
    (tmp_path / "extra" / shard.name).write_bytes(blob + np.zeros(2, "<f4").tobytes())
    with pytest.raises(WeightsFormatError) as exc:
        FaceExpressionNet.from_weights(tmp_path / "extra" / EXP_MANIFEST, verify=False)
    assert "not used by the module: 'fc/extra'" in _one_line(exc)

    # a wrong shape (same byte count)
    spec[0]["weights"][-2]["shape"] = [7, 256]
    manifest.write_text(json.dumps(spec))
    with pytest.raises(WeightsFormatError) as exc:
        FaceExpressionNet.from_weights(tmp_path, verify=False)
    assert "'fc/weights' has shape [7, 256], the module expects [256, 7]" in _one_line(exc)
    # ... which the checksum of the edited manifest catches first
    with pytest.raises(WeightsFormatError) as exc:
        FaceExpressionNet.from_weights(tmp_path)
    assert EXP_MANIFEST in _one_line(exc) and "checksum mismatch" in str(exc.value)

    # a tampered shard: one flipped byte
    _copy_expression(faceapi_dir, tmp_path)
    shard.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    with pytest.raises(WeightsFormatError) as exc:
        FaceExpressionNet.from_weights(tmp_path)
    assert "face_expression_model.bin: SHA-256 checksum mismatch" in _one_line(exc)


def test_published_checksums_match_shared_files(faceapi_dir):
    listed = dict(reversed(line.split()) for line in (faceapi_dir / "SHA256SUMS").read_text().splitlines() if line)
    assert listed == FACE_API_SHA256


# ------------------------------------------------------------------------------------------------
# (b) the ports against the original JavaScript


def test_structure(recognition, expression):
    rec = dict(recognition.named_modules())
    for name in ("preprocess", "stem", "layer1", "layer2", "layer3", "layer4", "fc"):
        assert name in rec
    assert [len(rec[f"layer{i}"]) for i in range(1, 5)] == [3, 4, 3, 4]
    assert [rec[f"layer{i}"][-1].conv2.conv.out_channels for i in range(1, 5)] == [32, 64, 128, 256]
    assert sum(isinstance(m, nn.Conv2d) for m in rec.values()) == 29
    assert sum(isinstance(m, Scale) for m in rec.values()) == 29
    exp = dict(expression.named_modules())
    for name in ("preprocess", "dense0", "dense1", "dense2", "dense3", "fc"):
        assert name in exp
    assert isinstance(exp["dense0.conv0"], nn.Conv2d) and exp["dense0.conv0"].stride == (2, 2)
    depthwise = exp["dense2.conv1.depthwise"]
    assert (
        isinstance(depthwise, nn.Conv2d)
        and depthwise.groups == 128
        and exp["dense2.conv1.pointwise"].kernel_size == (1, 1)
    )
    assert sum(isinstance(m, nn.Conv2d) for m in exp.values()) == 1 + 15 * 2
    assert expression.class_names == ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


def test_recognition_matches_javascript(recognition, reference):
    data, images, cases = reference
    worst = 0.0
    for case in (c for c in cases if c["net"] == "recognition"):
        xs = _inputs(images, case)
        with torch.no_grad():
            out = recognition(torch.cat(xs)) if len({x.shape for x in xs}) == 1 else None
            singles = torch.cat([recognition(x) for x in xs])
        want = data[f"out_{case['id']}"]
        assert want.shape == (len(xs), 128)
        for got in (out, singles):
            if got is not None:
                diff = float(np.abs(got.numpy() - want).max())
                assert diff < 1e-4, (case["id"], diff)
                worst = max(worst, diff)
    print(f"recognition: max abs difference from the JavaScript {worst:.2e}")


def test_expression_matches_javascript(expression, reference):
    data, images, cases = reference
    worst = 0.0
    for case in (c for c in cases if c["net"] == "expression"):
        with torch.no_grad():
            logits = torch.cat([expression(x) for x in _inputs(images, case)])
        probs = torch.softmax(logits, 1).numpy()
        diff = float(np.abs(probs - data[f"out_{case['id']}"]).max())
        assert diff < 1e-5, (case["id"], diff)
        assert np.abs(logits.numpy() - data[f"logits_{case['id']}"]).max() < 1e-4, case["id"]
        worst = max(worst, diff)
    print(f"expression: max abs difference of probabilities from the JavaScript {worst:.2e}")


# ------------------------------------------------------------------------------------------------
# (c) sanity


def test_descriptor_distances(recognition, reference):
    _, images, _ = reference
    face = torch.from_numpy(images["face150"].astype(np.float32) / 255).permute(2, 0, 1)[None]
    cat = torch.from_numpy(images["cat150"].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        d_face, d_mirror, d_cat = recognition(torch.cat([face, face.flip(-1), cat]))
    mirror = float((d_face - d_mirror).norm())
    to_cat = float((d_face - d_cat).norm())
    print(f"face vs mirror {mirror:.3f}, face vs cat {to_cat:.3f}")
    assert mirror < 0.6
    # The close-up cat lies at 0.58, just inside dlib's 0.6 same-person radius (the original JavaScript
    # gives the same); it is still more than twice as far as the mirror image.
    assert to_cat > 0.5 and to_cat > 2 * mirror


def test_portrait_is_happy(expression, reference):
    _, images, _ = reference
    face = torch.from_numpy(images["face112"].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        (named,) = expression.predict(face)
    print({k: round(v, 6) for k, v in named.items()})
    assert max(named, key=lambda k: named[k]) == "happy" and named["happy"] > 0.9


# ------------------------------------------------------------------------------------------------
# (d) finding the weights


def test_from_weights_default_lookup(faceapi_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INTERP_DATA_DIR", str(faceapi_dir.parent))
    assert find_manifest(REC_MANIFEST) == faceapi_dir / REC_MANIFEST
    assert isinstance(FaceExpressionNet.from_weights(), FaceExpressionNet)
    # the cache comes first
    (tmp_path / "cache" / "face-api").mkdir(parents=True)
    shutil.copyfile(faceapi_dir / REC_MANIFEST, tmp_path / "cache" / "face-api" / REC_MANIFEST)
    assert find_manifest(REC_MANIFEST) == tmp_path / "cache" / "face-api" / REC_MANIFEST


def test_from_weights_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INTERP_DATA_DIR", str(tmp_path / "data"))
    for cls in (FaceRecognitionNet, FaceExpressionNet):
        with pytest.raises(DataNotFoundError) as exc:
            cls.from_weights()
        assert "make face-weights" in _one_line(exc)
    with pytest.raises(DataNotFoundError) as exc:
        FaceRecognitionNet.from_weights(tmp_path / "nowhere")
    assert "make face-weights" in _one_line(exc)
    monkeypatch.delenv("INTERP_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataNotFoundError) as exc:
        FaceExpressionNet.from_weights()
    assert str(Path(tmp_path / "home" / ".cache" / "interp" / "face-api")) in _one_line(exc)
