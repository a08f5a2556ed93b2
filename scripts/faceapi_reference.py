"""Make ``tests/fixtures/faceapi_reference.npz``: outputs of the original face-api JavaScript.

The fixture proves that :mod:`interp.models.faceapi` computes what face-api computes: the
tests (``tests/models/test_faceapi.py``) run the PyTorch port on the fixture's inputs and compare with the
outputs the JavaScript gave, without needing Node.

Procedure (needs Node >= 18 and npm; the npm registry once):

1. ``cd scripts/faceapi_reference && npm install`` (or ``npm ci`` with the lock file): installs the
   pinned ``@vladmandic/face-api`` 1.7.15, ``@tensorflow/tfjs`` 4.22.0 and
   ``@tensorflow/tfjs-backend-wasm`` 4.22.0 into ``node_modules/`` (not committed).
2. ``python scripts/faceapi_reference.py [--weights DIR]`` (``DIR``: the folder holding the four
   face-api files, default ``$INTERP_DATA_DIR/face-api``, else ``../shared/data/face-api``). It

   * cuts the inputs from the shared photos (``images/astronaut.png``: a tight face crop;
     ``images/chelsea.png``: the cat, square crop) with Pillow, at the nets' sizes (150 and 112)
     and at one non-square size, and draws a synthetic integer pattern; all as uint8 RGB;
   * writes them as float32 on the 0-255 scale, with the list of cases, into a temporary folder;
   * runs ``node scripts/faceapi_reference/reference.js <weights> <tmp>``, which loads the nets with
     face-api's own ``loadFromDisk``, selects TensorFlow.js's pure-JS ``cpu`` backend and calls the
     package's ``faceRecognitionNet.computeFaceDescriptor`` and ``faceExpressionNet.forward`` /
     ``runNet`` (logits) / ``predictExpressions``, single images and batches;
   * stores the uint8 inputs, the cases (JSON) and the outputs in the ``.npz`` (about 180 KB),
     and prints the port's largest differences from the JavaScript.

Cases: recognition of the face (150), its mirror image, the cat, the pattern, the face at 112 and
the non-square face crop (these two go through face-api's pad-to-square and
``tf.image.resizeBilinear``), and a batch of four; expression likewise at 112 (the cat and the
150 face are resized by the JavaScript), and a batch of four.

Inputs given to ``tf.tensor3d`` are exactly the uint8 values, so Python rebuilds them exactly:
``image.astype(float32) / 255`` is what the port gets (its ``preprocess`` multiplies by 255).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = REPO / "scripts" / "faceapi_reference"
FIXTURE = REPO / "tests" / "fixtures" / "faceapi_reference.npz"

FACE_BOX = (154, 42, 294, 182)
"""(left, top, right, bottom) of the face in ``astronaut.png`` (512x512): a 140-pixel square."""
FACE_BOX_NONSQUARE = (184, 62, 264, 158)
"""An 80x96 (width x height) crop of the face, given at its own size (pad + resize path)."""


def default_weights_dir() -> Path:
    root = os.environ.get("INTERP_DATA_DIR")
    return (Path(root) if root else REPO.parent / "shared" / "data") / "face-api"


def pattern(size: int) -> np.ndarray:
    """A deterministic synthetic RGB pattern (integer arithmetic only): bands, bars and a checkerboard
    (made of runs, so that it compresses to almost nothing in the fixture)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.int64)
    r = (y // 3 * 11) % 256
    g = (x // 8 * 37) % 256
    b = np.where(((x // 10) + (y // 10)) % 2 == 0, 230, 30)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def make_images(images_dir: Path) -> dict[str, np.ndarray]:
    """The uint8 HWC RGB inputs, by name."""
    from PIL import Image

    astronaut = Image.open(images_dir / "astronaut.png").convert("RGB")
    cat = Image.open(images_dir / "chelsea.png").convert("RGB")
    side = min(cat.size)
    left = (cat.size[0] - side) // 2
    cat_square = cat.crop((left, 0, left + side, side))
    face = astronaut.crop(FACE_BOX)
    return {
        "face150": np.asarray(face.resize((150, 150), Image.Resampling.BILINEAR)),
        "face112": np.asarray(face.resize((112, 112), Image.Resampling.BILINEAR)),
        "cat150": np.asarray(cat_square.resize((150, 150), Image.Resampling.BILINEAR)),
        "face_nonsquare": np.asarray(astronaut.crop(FACE_BOX_NONSQUARE)),
        "pattern150": pattern(150),
        "pattern112": pattern(112),
    }


def _inp(image: str, flip: bool = False) -> dict:
    return {"image": image, "flip": flip}


CASES: list[dict] = [
    {"id": "rec_face", "net": "recognition", "call": "single", "inputs": [_inp("face150")]},
    {"id": "rec_face_mirror", "net": "recognition", "call": "single", "inputs": [_inp("face150", True)]},
    {"id": "rec_cat", "net": "recognition", "call": "single", "inputs": [_inp("cat150")]},
    {"id": "rec_pattern", "net": "recognition", "call": "single", "inputs": [_inp("pattern150")]},
    {"id": "rec_face112_resized", "net": "recognition", "call": "single", "inputs": [_inp("face112")]},
    {"id": "rec_face_nonsquare", "net": "recognition", "call": "single", "inputs": [_inp("face_nonsquare")]},
    {
        "id": "rec_batch",
        "net": "recognition",
        "call": "batch",
        "inputs": [_inp("face150"), _inp("face150", True), _inp("cat150"), _inp("pattern150")],
    },
    {"id": "exp_face", "net": "expression", "call": "single", "inputs": [_inp("face112")]},
    {"id": "exp_face_mirror", "net": "expression", "call": "single", "inputs": [_inp("face112", True)]},
    {"id": "exp_cat_resized", "net": "expression", "call": "single", "inputs": [_inp("cat150")]},
    {"id": "exp_pattern", "net": "expression", "call": "single", "inputs": [_inp("pattern112")]},
    {"id": "exp_face150_resized", "net": "expression", "call": "single", "inputs": [_inp("face150")]},
    {"id": "exp_face_nonsquare", "net": "expression", "call": "single", "inputs": [_inp("face_nonsquare")]},
    {
        "id": "exp_batch",
        "net": "expression",
        "call": "batch",
        "inputs": [_inp("face112"), _inp("face112", True), _inp("pattern112"), _inp("cat150")],
    },
]


def build_input(images: dict[str, np.ndarray], spec: dict) -> np.ndarray:
    """One case input as uint8 HWC (mirrored left-right when ``flip``)."""
    image = images[spec["image"]]
    return np.ascontiguousarray(image[:, ::-1] if spec["flip"] else image)


def run_node(weights: Path, images: dict[str, np.ndarray], node: str = "node") -> dict:
    """Run ``reference.js`` on all cases; returns its parsed ``outputs.json``."""
    if not (NODE_DIR / "node_modules" / "@vladmandic" / "face-api").is_dir():
        raise SystemExit(f"error: run `npm install` in {NODE_DIR} first")
    with tempfile.TemporaryDirectory(prefix="faceapi-ref-") as tmp:
        work = Path(tmp)
        chunks: list[bytes] = []
        offset = 0
        cases = []
        for case in CASES:
            inputs = []
            for spec in case["inputs"]:
                data = build_input(images, spec).astype("<f4").tobytes()
                inputs.append({"offset": offset, "shape": list(images[spec["image"]].shape)})
                chunks.append(data)
                offset += len(data)
            cases.append({**case, "inputs": inputs})
        (work / "inputs.bin").write_bytes(b"".join(chunks))
        (work / "cases.json").write_text(json.dumps({"cases": cases}))
        subprocess.run([node, str(NODE_DIR / "reference.js"), str(weights), str(work)], cwd=NODE_DIR, check=True)
        return json.loads((work / "outputs.json").read_text())


def compare_with_port(fixture: Path, weights: Path) -> None:
    """Print the port's largest absolute differences from the JavaScript, by case."""
    import torch

    from interp.models.faceapi import FaceExpressionNet, FaceRecognitionNet

    torch.set_num_threads(1)
    data = np.load(fixture, allow_pickle=False)
    images = {k[4:]: data[k] for k in data.files if k.startswith("img_")}
    nets = {
        "recognition": FaceRecognitionNet.from_weights(weights),
        "expression": FaceExpressionNet.from_weights(weights),
    }
    for case in json.loads(str(data["cases"])):
        xs = [
            torch.from_numpy(build_input(images, s).astype(np.float32) / 255).permute(2, 0, 1) for s in case["inputs"]
        ]
        with torch.no_grad():
            net = nets[case["net"]]
            outs = [net(x[None]) for x in xs]
            out = torch.cat([torch.softmax(o, 1) for o in outs] if case["net"] == "expression" else outs)
        name = case["id"]
        diff = np.abs(out.numpy() - data[f"out_{name}"]).max()
        extra = ""
        if case["net"] == "expression":
            logits = torch.cat(outs).numpy()
            extra = f", logits {np.abs(logits - data[f'logits_{name}']).max():.2e}"
        print(f"{name:22s} max abs diff {diff:.2e}{extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=default_weights_dir(), help="folder of the face-api files")
    parser.add_argument("--images", type=Path, default=None, help="folder of astronaut.png and chelsea.png")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    parser.add_argument("--node", default="node")
    args = parser.parse_args(argv)
    images_dir = args.images or args.weights.parent / "images"

    images = make_images(images_dir)
    result = run_node(args.weights, images, args.node)
    arrays: dict[str, np.ndarray] = {f"img_{name}": image for name, image in images.items()}
    for case in CASES:
        out = result["results"][case["id"]]
        arrays[f"out_{case['id']}"] = np.asarray(out["output"], dtype=np.float32)
        if case["net"] == "expression":
            arrays[f"logits_{case['id']}"] = np.asarray(out["logits"], dtype=np.float32)
            named = np.asarray([list(e.values()) for e in out["expressions"]], dtype=np.float32)
            keys = [list(e) for e in out["expressions"]]
            assert all(k == ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"] for k in keys)
            assert np.array_equal(named, arrays[f"out_{case['id']}"]), "predictExpressions != forward"
    arrays["cases"] = np.asarray(json.dumps(CASES))
    arrays["meta"] = np.asarray(json.dumps(result["meta"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)  # type: ignore[arg-type]
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB); JavaScript: {result['meta']}")
    compare_with_port(args.out, args.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
