"""Building the unit atlas: static HTML pages over the result files of a run.

The interpretation steps save their tensors under ``<run>/interp/<step>/<layer>/<step>.pt``
(``featvis``, ``topk``, ``attribution``, ``templates``). :func:`build_atlas` reads them and
writes, under ``<run>/atlas/``::

    index.html                    the layers, with their unit counts and what was computed
    atlas.css, atlas.js           style sheet; keyboard navigation, sorting and filtering
    examples/<idx>.png            data set examples, one file per data set index, shared by all units
    examples/<idx>_<t>-<l>-<b>-<r>.png   receptive-field crops (conv layers)
    <layer>/index.html            every unit of the layer as a thumbnail, sortable and filterable
    <layer>/unit_0032.html        one page per unit
    <layer>/img/...               feature visualizations, weight templates, attribution maps

Pages are static files that open from ``file://`` without a network: images are PNG files next
to them, the histogram is an inline SVG, and nothing is fetched from elsewhere.
"""

from __future__ import annotations

import html
import math
import os
import re
import struct
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from interp.atlas.static import CSS, JS
from interp.errors import InterpError

__all__ = [
    "build_atlas",
    "load_results",
    "diverging",
    "png_bytes",
    "STEPS",
    "CropBox",
    "layer_folder",
    "layer_from_folder",
    "result_name",
]

#: ``crop_box(layer, (row, col)) -> (top, left, bottom, right)``: the input pixels that the
#: activation at ``(row, col)`` of ``layer`` sees (bottom and right exclusive).
CropBox = Callable[[str, tuple[int, int]], tuple[int, int, int, int]]

#: result files read, per interpretation step: ``<run>/interp/<step>/<layer>/<file>``
STEPS = {
    "featvis": "featvis.pt",
    "topk": "topk.pt",
    "attribution": "attribution.pt",
    "templates": "templates.pt",
}

_NEG = torch.tensor([33, 102, 172], dtype=torch.float32).reshape(3, 1, 1) / 255
_POS = torch.tensor([178, 24, 43], dtype=torch.float32).reshape(3, 1, 1) / 255
#: how the attribution methods are named in legends
METHOD_NAMES = {
    "ig": "ig: integrated gradients",
    "saliency": "saliency: input gradient",
    "gradxinput": "gradient × input",
    "smoothgrad": "SmoothGrad",
    "occlusion": "occlusion",
    "lrp": "lrp: LRP (ε+♭, Zennit)",
}
_NEAREST = 8  # nearest units listed on a unit page
#: the most top (and bottom) examples a unit page shows; a result with a larger k keeps the rest
#: in its file (the pages of a k=6000 result would weigh megabytes each)
MAX_EXAMPLES = 64
_SMALL = 64  # images whose shorter side is below this are shown with crisp (pixelated) upscaling


# --- result folders -------------------------------------------------------------------------------

_ESCAPED = re.compile(r"[%/\\\x00]")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def layer_folder(layer: str) -> str:
    """The folder name that holds a layer's results (``<run>/interp/<step>/<folder>/<step>.pt``):
    one plain folder for any layer name, reversed by :func:`layer_from_folder`.

    ``%``, ``/``, ``\\`` and NUL are percent-encoded (``%25``, ``%2F``, ``%5C``, ``%00``) and so
    is a leading ``.`` (``%2E``: no ``.``, ``..`` or hidden folder); the empty name is ``%``.
    Names of real modules (``features.3``, ``layer3.0.conv1``) are unchanged.

    >>> layer_folder("features.3"), layer_folder("block/conv"), layer_folder(".."), layer_folder("50%")
    ('features.3', 'block%2Fconv', '%2E.', '50%25')
    """
    if layer == "":
        return "%"
    folder = _ESCAPED.sub(lambda m: f"%{ord(m.group()):02X}", layer)
    return "%2E" + folder[1:] if folder.startswith(".") else folder


def layer_from_folder(folder: str) -> str:
    """The layer name a result folder stands for: the inverse of :func:`layer_folder`."""
    if folder == "%":
        return ""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), folder)


def result_name(name: str) -> str:
    """``"<step>/<layer>/<file>"`` (the name steps give ``Reporter.save``) with the layer part as
    :func:`layer_folder` writes it; the layer is everything between the first and the last ``/``,
    so a layer name holding ``/`` stays one folder. Names of another shape are returned as given.

    >>> result_name("topk/block/conv/topk.pt")
    'topk/block%2Fconv/topk.pt'
    """
    step, sep, rest = name.partition("/")
    layer, sep2, fname = rest.rpartition("/")
    if not (sep and sep2):
        return name
    return f"{step}/{layer_folder(layer)}/{fname}"


# --- reading ------------------------------------------------------------------------------------


def _result_files(base: Path, fname: str) -> list[tuple[str, Path]]:
    """(layer, path) of every ``fname`` under ``base`` (one step's folder), sorted. A layer folder
    is named by :func:`layer_folder`; result files in nested folders (written before layer names
    were encoded, a ``/`` in the name making a folder per part) are found too."""
    found = []
    for top, dirs, files in os.walk(base):  # symbolic links to folders are not followed
        dirs.sort()
        if fname in files and Path(top) != base:
            parts = Path(top).relative_to(base).parts
            found.append(("/".join(layer_from_folder(part) for part in parts), Path(top) / fname))
    return sorted(found)


def _read_result(path: Path) -> dict:
    """One result file, read safely (tensors and plain values only); errors are one line."""
    from interp.runs import _short_reason

    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before refusing a foreign pickle: the error says it.
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            data = torch.load(path, weights_only=True, map_location="cpu")
    except OSError as e:  # unreadable (permissions), a folder
        raise InterpError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    except Exception as e:  # a truncated, corrupt or foreign file (a pickle of Python objects)
        raise InterpError(f"cannot read {path}: {_short_reason(e)}") from None
    if not isinstance(data, dict) or "units" not in data:
        raise InterpError(f"{path} is not an interpretation result (a dict with 'units')")
    return data


def load_results(run_dir: str | Path) -> dict[str, dict[str, dict]]:
    """``{layer: {step: result dict}}`` for every result file under ``<run_dir>/interp``.

    Files are read with ``weights_only=True``: a file holding other Python objects is refused
    (an :class:`InterpError` of one line naming it), and no code in it runs. Layer names are
    decoded from their folder names (:func:`layer_from_folder`).
    """
    interp = Path(run_dir) / "interp"
    layers: dict[str, dict[str, dict]] = {}
    for step, fname in STEPS.items():
        base = interp / step
        if not base.is_dir():
            continue
        for layer, path in _result_files(base, fname):
            layers.setdefault(layer, {})[step] = _read_result(path)
    return layers


def _featvis_views(fv: dict) -> list[str]:
    return [
        k
        for k, v in fv.items()
        if k != "units" and not k.startswith("activation_") and isinstance(v, torch.Tensor) and v.dim() == 4
    ]


def _attr_methods(at: dict) -> list[str]:
    return [
        k for k, v in at.items() if k not in ("units", "examples") and isinstance(v, torch.Tensor) and v.dim() in (4, 5)
    ]


def _rows(d: dict | None) -> dict[int, int]:
    if not d:
        return {}
    return {int(u): i for i, u in enumerate(torch.as_tensor(d["units"]).reshape(-1).tolist())}


def _opt(d: dict | None, key: str):
    v = None if d is None else d.get(key)
    return v if isinstance(v, torch.Tensor) else None


@dataclass
class _Layer:
    name: str
    steps: dict[str, dict]
    slug: str = ""
    units: list[int] = field(default_factory=list)
    rows: dict[str, dict[int, int]] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    labels: dict[int, list[int | None]] = field(default_factory=dict)  # unit -> top-k labels
    near: dict[int, list[tuple[int, float]]] = field(default_factory=dict)

    def row(self, step: str, unit: int) -> int | None:
        return self.rows.get(step, {}).get(unit)


def _slug(name: str, taken: set[str]) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "layer"
    base, i = s, 2
    while s.lower() in taken or s.lower() in ("examples", "index.html", "atlas.css", "atlas.js"):
        s, i = f"{base}_{i}", i + 1
    taken.add(s.lower())
    return s


# --- images -------------------------------------------------------------------------------------


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """[C, H, W] (or [H, W]) float in [0, 1] -> uint8 array [H, W] (one channel) or [H, W, 3]."""
    x = img.detach().float().cpu()
    if x.dim() == 2:
        x = x[None]
    if x.shape[0] == 2:
        x = torch.cat([x, x[:1]], 0)
    elif x.shape[0] > 3:
        x = x[:3]
    arr = x.clamp(0, 1).mul(255).round().to(torch.uint8)
    return arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).contiguous().numpy()


def _batch_to_uint8(imgs: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] float in [0, 1] -> uint8 [N, H, W] (one channel) or [N, H, W, 3]."""
    x = imgs.detach().float().cpu()
    if x.shape[1] == 2:
        x = torch.cat([x, x[:, :1]], 1)
    elif x.shape[1] > 3:
        x = x[:, :3]
    arr = x.clamp(0, 1).mul(255).round().to(torch.uint8)
    return arr[:, 0].numpy() if arr.shape[1] == 1 else arr.permute(0, 2, 3, 1).contiguous().numpy()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(arr: np.ndarray, level: int = 6) -> bytes:
    """A PNG file (8-bit grey for [H, W], RGB for [H, W, 3]) of a uint8 array.

    Written directly (no filter, zlib): for thousands of small images this is several times
    faster than going through PIL, and zlib releases the GIL, so a thread pool overlaps them.
    """
    h, w = arr.shape[:2]
    colour = 0 if arr.ndim == 2 else 2
    rows = np.ascontiguousarray(arr).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(raw, level))
        + _chunk(b"IEND", b"")
    )


def _write_png(arr: np.ndarray, path: Path) -> None:
    with open(path, "wb") as f:
        f.write(png_bytes(arr))


def _save(img: torch.Tensor, path: Path) -> None:
    _write_png(_to_uint8(img), path)


def diverging(m: torch.Tensor, scale: float) -> torch.Tensor:
    """A signed map [H, W] as colours [3, H, W]: blue (-scale) .. white (0) .. red (+scale)."""
    x = (m.detach().float() / max(float(scale), 1e-12)).clamp(-1, 1)[None]
    pos, neg = x.clamp(min=0), (-x).clamp(min=0)
    return (1 - pos - neg) + _POS * pos + _NEG * neg


def _fmt(v: float | None) -> str:
    """A number for people: about three significant digits, scientific notation when tiny or huge."""
    if v is None or math.isnan(float(v)):
        return "–"
    v = float(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e4 or a < 1e-3:
        return f"{v:.2e}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _as_label(v) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _e(s) -> str:
    return html.escape(str(s), quote=True)


# --- the builder ------------------------------------------------------------------------------


class _Builder:
    def __init__(self, run_dir: Path, out_dir: Path, dataset, model, crop_box: CropBox | None, progress: bool):
        self.run_dir, self.out, self.dataset, self.model = run_dir, out_dir, dataset, model
        self.crop_box, self.progress = crop_box, progress
        from interp.data.images import class_names, label_reader

        # The class names, and how to read an item's label when the data set declares its labels
        # (an image folder: its class subfolders, or no labels; its items carry their index).
        self.class_names = class_names(dataset) if dataset is not None else None
        self.read_label = label_reader(dataset) if dataset is not None else None
        self.example_size: dict[int, tuple[int, int]] = {}  # dataset index -> (H, W)
        self.example_label: dict[int, int | None] = {}
        self.crops: set[tuple[int, tuple[int, int, int, int]]] = set()

    # data set examples, each written once --------------------------------------------------
    def _item(self, idx: int):
        item = self.dataset[idx]
        if isinstance(item, (tuple, list)):
            img = item[0]
            label = item[1] if len(item) > 1 else None
        else:
            img, label = item, None
        img = torch.as_tensor(img)
        if img.dtype == torch.uint8:
            img = img.float() / 255
        if img.dim() == 2:
            img = img[None]
        if self.read_label is not None:
            return img, self.read_label(idx)
        return img, _as_label(label)

    def _items(self, indices: list[int]) -> tuple[torch.Tensor | list[torch.Tensor], list[int | None]]:
        """Images ([n, C, H, W] or a list of [C, H, W]) and labels of data set ``indices``; one
        sliced fetch when the data set has ``__getitems__`` returning ``(images, labels)``."""
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is not None:
            try:
                batch = getitems(indices)
            except Exception:
                batch = None
            if (
                isinstance(batch, (tuple, list))
                and len(batch) == 2
                and isinstance(batch[0], torch.Tensor)
                and batch[0].dim() == 4
                and batch[0].shape[0] == len(indices)
            ):
                imgs, labels = batch
                if imgs.dtype == torch.uint8:
                    imgs = imgs.float() / 255
                if self.read_label is not None:
                    return imgs, [self.read_label(i) for i in indices]
                labels = [_as_label(v) for v in labels] if labels is not None else [None] * len(indices)
                return imgs, labels
        pairs = [self._item(i) for i in indices]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def write_examples(self, indices: Iterable[int], chunk: int = 2048, threads: int = 2) -> None:
        """Write ``examples/<idx>.png`` once per data set index (fetched a chunk at a time)."""
        ex = self.out / "examples"
        ex.mkdir(parents=True, exist_ok=True)
        todo = sorted(i for i in set(indices) if i >= 0 and i not in self.example_size)

        def write_all(jobs):
            for arr, path in jobs:
                _write_png(arr, path)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                imgs, labels = self._items(part)
                if isinstance(imgs, torch.Tensor):  # one conversion for the whole chunk
                    arrays = list(_batch_to_uint8(imgs))
                else:
                    arrays = [_to_uint8(img) for img in imgs]
                jobs = []
                for idx, arr, label in zip(part, arrays, labels):
                    self.example_size[idx] = (int(arr.shape[0]), int(arr.shape[1]))
                    self.example_label[idx] = label
                    jobs.append((arr, ex / f"{idx}.png"))
                list(pool.map(write_all, [jobs[i::threads] for i in range(threads)]))

    def box(self, layer: str, pos) -> tuple[int, int, int, int] | None:
        if self.crop_box is None or pos is None:
            return None
        t, lf, b, r = self.crop_box(layer, (int(pos[0]), int(pos[1])))
        return int(t), int(lf), int(b), int(r)

    def write_crops(self) -> None:
        ex = self.out / "examples"
        for idx, (t, lf, b, r) in sorted(self.crops):
            img, _ = self._item(idx)
            H, W = img.shape[-2:]
            t, lf, b, r = max(0, t), max(0, lf), min(H, b), min(W, r)
            if b <= t or r <= lf:
                continue
            _save(img[:, t:b, lf:r], ex / f"{idx}_{t}-{lf}-{b}-{r}.png")

    def label_name(self, label) -> str:
        if label is None:
            return ""
        if self.class_names is not None and 0 <= int(label) < len(self.class_names):
            return str(self.class_names[int(label)])
        return str(label)


def build_atlas(
    run_dir: str | Path,
    dataset=None,
    model=None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    crop_box: CropBox | None = None,
) -> Path:
    """Write the unit atlas of a run: static HTML pages for every layer and unit that has results.

    Args:
        run_dir: the run folder; results are read from ``<run_dir>/interp/<step>/<layer>/<step>.pt``.
        dataset: the data set the top-k indices refer to (items ``(image, label)`` with the image
            ``[C, H, W]`` in [0, 1]); without it the pages list indices and activations only.
        model: the model whose layers were interpreted; with it, each unit page lists the units
            whose weights (``model.get_submodule(layer).weight``, one row per output unit) are
            closest by cosine similarity.
        out_dir: where to write; default ``<run_dir>/atlas``.
        progress: show a tqdm progress bar over the units.
        crop_box: ``crop_box(layer, (row, col)) -> (top, left, bottom, right)``, the receptive
            field of a spatial position; conv-layer examples are then shown as that crop beside
            the full image with the box drawn. Default: the whole image (full image only).

    Returns:
        the path of ``index.html``.
    """
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    if not results:
        raise InterpError(
            f"no interpretation results under {run_dir / 'interp'}: expected files like "
            f"{run_dir / 'interp' / 'featvis' / '<layer>' / 'featvis.pt'} (run the featvis or topk "
            f"interpretation first)"
        )
    out = Path(out_dir) if out_dir is not None else run_dir / "atlas"
    _make_folder(out)
    try:
        return _write_atlas(_Builder(run_dir, out, dataset, model, crop_box, progress), results)
    except OSError as e:
        if not _inside(e, out):
            raise
        raise _write_error(out, e) from None


def _inside(e: OSError, out: Path) -> bool:
    """Whether the failed file operation was on ``out`` or a file under it."""
    if not e.filename:
        return False
    target, root = Path(os.fsdecode(e.filename)).absolute(), out.absolute()
    return target == root or root in target.parents


def _write_error(out: Path, e: OSError) -> InterpError:
    """A failure to write the atlas as one line that names the folder and the way out."""
    reason = e.strerror or type(e).__name__
    if isinstance(e, PermissionError):
        reason = "permission denied (a read-only run folder?)"
    return InterpError(f"cannot write the atlas to {out}: {reason}; give out=<folder> to write it elsewhere")


def _make_folder(out: Path) -> None:
    """Create the atlas folder ``out``; a file in its way or a folder that cannot be written is one line."""
    if out.exists() and not out.is_dir():
        raise InterpError(f"cannot write the atlas to {out}: it is a file, not a folder; give out=<folder>")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file where one of its parent folders should be
        raise InterpError(f"cannot write the atlas to {out}: a file is in the way; give out=<folder>") from None
    except OSError as e:
        raise _write_error(out, e) from None


def _write_atlas(b: _Builder, results: dict[str, dict[str, dict]]) -> Path:
    """Write every page and image of the atlas under ``b.out``; returns the index page."""
    out = b.out
    start = time.perf_counter()

    taken: set[str] = set()
    layers: list[_Layer] = []
    for name in sorted(results):
        L = _Layer(name, results[name], slug=_slug(name, taken))
        L.rows = {step: _rows(d) for step, d in L.steps.items()}
        L.units = sorted(set().union(*[set(r) for r in L.rows.values()]))
        if "featvis" in L.steps:
            L.views = _featvis_views(L.steps["featvis"])
        if "attribution" in L.steps:
            L.methods = _attr_methods(L.steps["attribution"])
        layers.append(L)

    # Every data set example any page shows, written once.
    if b.dataset is not None:
        needed: list[int] = []
        for L in layers:
            tk = L.steps.get("topk")
            if tk is None:
                continue
            for key in ("indices", "bottom_indices"):
                t = _opt(tk, key)
                if t is not None:
                    needed.extend(int(i) for i in t[:, :MAX_EXAMPLES].reshape(-1).tolist())
        b.write_examples(needed)

    for L in layers:
        _prepare_labels(b, L)
        _prepare_nearest(b, L)

    (out / "atlas.css").write_text(CSS, encoding="utf-8")
    (out / "atlas.js").write_text(JS, encoding="utf-8")

    total = sum(len(L.units) for L in layers)
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="atlas", unit="unit", disable=not b.progress)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None
    for L in layers:
        _write_layer(b, L, layers, bar)
    if bar is not None:
        bar.close()
    b.write_crops()
    index = out / "index.html"
    index.write_text(_index_page(b, layers, time.perf_counter() - start), encoding="utf-8")
    return index


# --- per-layer preparation -------------------------------------------------------------------


def _prepare_labels(b: _Builder, L: _Layer) -> None:
    tk = L.steps.get("topk")
    if tk is None:
        return
    labels = _opt(tk, "labels")
    idx = _opt(tk, "indices")
    if b.read_label is not None and idx is not None:  # the data set says what its labels are
        labels = None
    for u, r in L.rows["topk"].items():
        if labels is not None:
            L.labels[u] = [_known(v) for v in labels[r].tolist()]
        elif idx is not None and b.dataset is not None:
            L.labels[u] = [b.example_label.get(int(i)) for i in idx[r, :MAX_EXAMPLES].tolist() if int(i) >= 0]


def _known(label) -> int | None:
    """A saved label, None for the -1 that marks a missing one."""
    value = _as_label(label)
    return value if value is not None and value >= 0 else None


def _majority(labels: Sequence[int | None]) -> tuple[int | None, int]:
    c = Counter(v for v in labels if v is not None)
    if not c:
        return None, 0
    ((lab, n),) = c.most_common(1)
    return lab, n


def _prepare_nearest(b: _Builder, L: _Layer) -> None:
    if b.model is None:
        return
    try:
        w = b.model.get_submodule(L.name).weight
    except AttributeError:
        return
    if not isinstance(w, torch.Tensor) or w.dim() < 2:
        return
    with torch.no_grad():
        w = w.detach().float().cpu().flatten(1)
        w = w / w.norm(dim=1, keepdim=True).clamp(min=1e-12)
        units = [u for u in L.units if 0 <= u < w.shape[0]]
        if not units or w.shape[0] < 2:
            return
        sim = w[units] @ w.T  # [U, all units]
        sim[torch.arange(len(units)), torch.tensor(units)] = -float("inf")
        k = min(_NEAREST, w.shape[0] - 1)
        vals, idx = sim.topk(k, dim=1)
    for u, vs, ix in zip(units, vals.tolist(), idx.tolist()):
        L.near[u] = list(zip(ix, vs))


def _columns(L: _Layer) -> list[tuple[str, str, str]]:
    """(key, label, default order) of the numeric columns the layer page sorts by."""
    cols = [("unit", "unit number", "asc")]
    fv, tk = L.steps.get("featvis"), L.steps.get("topk")
    for v in L.views:
        if _opt(fv, f"activation_{v}") is not None:
            cols.append((f"act-{_key(v)}", f"activation ({v})", "desc"))
            if _opt(tk, "dataset_max") is not None:
                cols.append((f"ratio-{_key(v)}", f"ratio to data set max ({v})", "desc"))
    if _opt(tk, "dataset_max") is not None:
        cols.append(("dmax", "data set max activation", "desc"))
    elif _opt(tk, "values") is not None:
        cols.append(("dmax", "top-1 example activation", "desc"))
    if L.labels:
        cols.append(("purity", "top-k label agreement", "desc"))
    for step, key in _extra_columns(L):
        cols.append((f"x-{_key(step)}-{_key(key)}", key.replace("_", " "), "desc"))
    return cols


_KNOWN = {
    "units",
    "values",
    "indices",
    "positions",
    "bottom_values",
    "bottom_indices",
    "bottom_positions",
    "hist",
    "hist_edges",
    "labels",
    "bottom_labels",
    "dataset_max",
}


def _extra_columns(L: _Layer) -> list[tuple[str, str]]:
    """Other per-unit numbers a result file holds (a float tensor [U], e.g. ``legibility``)."""
    out = []
    for step in ("featvis", "topk"):
        d = L.steps.get(step)
        if d is None:
            continue
        n = len(L.rows[step])
        for key, v in d.items():
            if key in _KNOWN or key.startswith("activation_") or not isinstance(v, torch.Tensor):
                continue
            numeric = v.is_floating_point() or v.dtype in (torch.int32, torch.int64)
            if v.dim() != 1 or v.shape[0] != n or not numeric:
                continue
            out.append((step, key))
    return out


def _key(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "x"


def _unit_stats(L: _Layer, u: int) -> dict[str, float]:
    fv, tk = L.steps.get("featvis"), L.steps.get("topk")
    s: dict[str, float] = {"unit": float(u)}
    dmax = None
    r = L.row("topk", u)
    if r is not None:
        t = _opt(tk, "dataset_max")
        if t is not None:
            dmax = float(t[r])
        else:
            top = _opt(tk, "values")
            if top is not None and top.shape[1] > 0:
                dmax = float(top[r, 0])
    if dmax is not None:
        s["dmax"] = dmax
    r = L.row("featvis", u)
    if r is not None:
        for v in L.views:
            a = _opt(fv, f"activation_{v}")
            if a is not None:
                s[f"act-{_key(v)}"] = float(a[r])
                if _opt(tk, "dataset_max") is not None and dmax is not None and dmax > 0:
                    s[f"ratio-{_key(v)}"] = float(a[r]) / dmax
    labs = L.labels.get(u)
    if labs:
        lab, n = _majority(labs)
        if lab is not None:
            s["purity"] = n / len(labs)
    for step, key in _extra_columns(L):
        r = L.row(step, u)
        if r is not None:
            s[f"x-{_key(step)}-{_key(key)}"] = float(L.steps[step][key][r])
    return s


# --- pages ------------------------------------------------------------------------------------


def _head(title: str, root: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(title)}</title><link rel="stylesheet" href="{root}atlas.css"></head><body>\n'
    )


def _foot(root: str) -> str:
    return f'<script src="{root}atlas.js"></script>\n</body></html>\n'


def _index_page(b: _Builder, layers: list[_Layer], seconds: float) -> str:
    rows = []
    for L in layers:
        what = []
        if L.views:
            what.append("feature visualization (" + ", ".join(L.views) + ")")
        if "topk" in L.steps:
            tk = L.steps["topk"]
            k = int(tk["values"].shape[1]) if _opt(tk, "values") is not None else 0
            what.append(
                f"top-{k} and bottom-{k} examples" if _opt(tk, "bottom_indices") is not None else f"top-{k} examples"
            )
        if L.methods:
            what.append("attribution (" + ", ".join(L.methods) + ")")
        if "templates" in L.steps:
            what.append("weight templates")
        rows.append(
            f'<tr><td><a href="{_e(L.slug)}/index.html"><b>{_e(L.name)}</b></a></td>'
            f"<td>{len(L.units)}</td><td>{_e('; '.join(what))}</td></tr>"
        )
    n_units = sum(len(L.units) for L in layers)
    model = type(b.model).__name__ if b.model is not None else "not given"
    if b.dataset is None:
        data = "not given"
    elif hasattr(b.dataset, "__len__"):
        data = f"{type(b.dataset).__name__} ({len(b.dataset)} examples)"
    else:
        data = type(b.dataset).__name__
    return (
        _head(f"Unit atlas – {b.run_dir.name}", "")
        + '<header class="top"><div class="crumbs"><b>Unit atlas</b></div></header><main>'
        + f'<h1>Unit atlas</h1><p class="lead">Run <code>{_e(b.run_dir)}</code>. Pick a layer to see all of its '
        f"units; each unit has a page with its feature visualizations, the data set examples that excite it "
        f"most and least, and more.</p>"
        + f'<div class="stats"><div class="stat"><b>{len(layers)}</b><span>layers</span></div>'
        f'<div class="stat"><b>{n_units}</b><span>units</span></div>'
        f'<div class="stat"><b>{_e(model)}</b><span>model</span></div>'
        f'<div class="stat"><b>{_e(data)}</b><span>data set</span></div></div>'
        + '<table class="layers"><thead><tr><th>layer</th><th>units</th><th>results</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
        + f'<p class="note" style="margin-top:18px">Built in {seconds:.1f} s. Static files: opens offline.</p>'
        + "</main>"
        + _foot("")
    )


def _unit_file(u: int) -> str:
    return f"unit_{u:04d}.html"


def _img_cls(h: int, w: int) -> str:
    return ' class="px"' if min(h, w) < _SMALL else ""


#: Feature visualization views from the most to the least legible (what a person reads, measured by
#: ``benchmarks/legibility.py`` and ``benchmarks/conv_legibility.py``): the layer grid shows the first one
#: the run has, with a switch to the others; views not named here come after, in the run's order.
LEGIBLE_ORDER = ("prototype", "prior", "accentuation", "maco", "plain")


def thumbnail_views(views: Sequence[str]) -> list[str]:
    """``views`` ordered for the layer grid: the most legible first (:data:`LEGIBLE_ORDER`).

    >>> thumbnail_views(["plain", "prior"])
    ['prior', 'plain']
    """
    rank = {v: i for i, v in enumerate(LEGIBLE_ORDER)}
    return sorted(views, key=lambda v: (rank.get(v, len(rank)), list(views).index(v)))


def _view_thumb(L: _Layer, u: int, view: str) -> tuple[str, tuple[int, int]] | None:
    """(path relative to the layer folder, (H, W)) of the unit's picture in ``view``, if it has one."""
    if view not in L.views or L.row("featvis", u) is None:
        return None
    img = L.steps["featvis"][view]
    return f"img/{_key(view)}/unit_{u:04d}.png", (int(img.shape[-2]), int(img.shape[-1]))


def _thumb(L: _Layer, u: int, b: _Builder) -> tuple[str, tuple[int, int]] | None:
    """(path relative to the layer folder, (H, W)) of the unit's thumbnail, if it has one: the most
    legible view, else the unit's top example."""
    if L.views and L.row("featvis", u) is not None:
        return _view_thumb(L, u, thumbnail_views(L.views)[0])
    r = L.row("topk", u)
    if r is not None and b.dataset is not None:
        idx = int(L.steps["topk"]["indices"][r, 0])
        if idx in b.example_size:
            return f"../examples/{idx}.png", b.example_size[idx]
    return None


def _write_layer(b: _Builder, L: _Layer, layers: list[_Layer], bar) -> None:
    d = b.out / L.slug
    (d / "img").mkdir(parents=True, exist_ok=True)
    fv = L.steps.get("featvis")
    for v in L.views:
        (d / "img" / _key(v)).mkdir(exist_ok=True)
    cols = _columns(L)
    cards = []
    label_set: set[int] = set()
    for i, u in enumerate(L.units):
        # Feature visualizations: written once, used as thumbnail and on the unit page.
        r = L.row("featvis", u)
        if r is not None and fv is not None:
            for v in L.views:
                _save(fv[v][r], d / "img" / _key(v) / f"unit_{u:04d}.png")
        stats = _unit_stats(L, u)
        labs = L.labels.get(u) or []
        lab, n = _majority(labs)
        if lab is not None:
            label_set.add(lab)
        prev_u = L.units[i - 1] if i > 0 else None
        next_u = L.units[i + 1] if i + 1 < len(L.units) else None
        page = _unit_page(b, L, u, stats, prev_u, next_u, layers)
        (d / _unit_file(u)).write_text(page, encoding="utf-8")
        cards.append(_card(b, L, u, stats, lab, n, len(labs), cols))
        if bar is not None:
            bar.update(1)
    (d / "index.html").write_text(_layer_page(b, L, cards, cols, label_set), encoding="utf-8")


def _card(b: _Builder, L: _Layer, u: int, stats: dict, lab, n: int, k: int, cols) -> str:
    data = " ".join(f'data-{key}="{stats[key]:.6g}"' for key, _, _ in cols if key in stats)
    label_attr = f' data-label="{lab}"' if lab is not None else ""
    meta = []
    shown = thumbnail_views(L.views)
    pictures = [(v, _view_thumb(L, u, v)) for v in shown]
    if any(th is not None for _, th in pictures):
        img = ""
        for i, (v, th) in enumerate(pictures):
            hidden = "" if i == 0 else " hidden"
            if th is None:
                img += f'<div class="noimg" data-view="{_e(v)}"{hidden}>no image</div>'
            else:
                alt = f"unit {u}, {_e(v)} view"
                img += f'<img src="{_e(th[0])}" alt="{alt}" data-view="{_e(v)}"{hidden}{_img_cls(*th[1])}>'
            a = stats.get(f"act-{_key(v)}")
            ratio = stats.get(f"ratio-{_key(v)}")
            if a is not None:
                line = f"{_e(v)}: act {_fmt(a)}" + (f" · ×{ratio:.2f}" if ratio is not None else "")
                meta.append(f'<span data-view="{_e(v)}"{hidden}>{line}</span>')
    else:
        th = _thumb(L, u, b)
        if th is not None:
            img = f'<img src="{_e(th[0])}" alt="unit {u}"{_img_cls(*th[1])}>'
        else:
            img = '<div class="noimg">no image</div>'
    if "dmax" in stats:
        meta.append(f"<span>data max {_fmt(stats['dmax'])}</span>")
    if lab is not None:
        meta.append(f'<span class="lab">label {_e(b.label_name(lab))} ({n}/{k})</span>')
    return (
        f'<a class="card" href="{_unit_file(u)}" data-unit="{u}" {data}{label_attr}>{img}'
        f'<div class="title">unit {u}</div><div class="meta">{"".join(meta)}</div></a>'
    )


def _layer_page(b: _Builder, L: _Layer, cards: list[str], cols, label_set: set[int]) -> str:
    opts = "".join(f'<option value="{key}" data-order="{order}">{_e(label)}</option>' for key, label, order in cols)
    controls = (
        f'<label>Sort by <select id="sort-by">{opts}</select></label>'
        f'<label>Order <select id="sort-order"><option value="asc">ascending</option>'
        f'<option value="desc">descending</option></select></label>'
    )
    if label_set:
        lab_opts = "".join(f'<option value="{lab}">{_e(b.label_name(lab))}</option>' for lab in sorted(label_set))
        controls += (
            f'<label>Top-k majority label <select id="filter-label"><option value="">any</option>'
            f"{lab_opts}</select></label>"
        )
    views = thumbnail_views(L.views)
    if len(views) > 1:
        view_opts = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in views)
        controls += f'<label>Thumbnails <select id="thumb-view">{view_opts}</select></label>'
    controls += f'<span class="count" id="shown-count">{len(cards)} units</span>'
    what = (
        f"thumbnails: feature visualization, the {_e(views[0])} view (the most legible this run has"
        + ("; switch with Thumbnails" if len(views) > 1 else "")
        + ")"
        if views
        else "thumbnails: the top example of each unit"
    )
    return (
        _head(f"{L.name} – unit atlas", "../")
        + '<header class="top"><div class="crumbs"><a href="../index.html">Unit atlas</a>'
        f'<span class="sep">/</span><b>{_e(L.name)}</b></div></header><main>'
        + f'<h1>Layer {_e(L.name)}</h1><p class="lead">{len(L.units)} units; {what}. '
        f'Click a unit for its page. "×" is the activation of the visualization divided by the largest '
        f'activation over the data set; "label" is the most common label among its top-k examples.</p>'
        + _scores_section(L)
        + f'<div class="controls">{controls}</div>'
        + '<div class="grid" id="unit-grid">'
        + "".join(cards)
        + "</div></main>"
        + _foot("../")
    )


def _example_fig(b: _Builder, L: _Layer, idx: int, value: float, label, pos) -> str:
    lines = []
    if label is not None:
        lines.append(f"label {_e(b.label_name(label))}")
    lines.append(f"#{idx}" + (f" at ({int(pos[0])}, {int(pos[1])})" if pos is not None else ""))
    caption = f"<figcaption><b>{_fmt(value)}</b>{''.join(f'<span>{t}</span>' for t in lines)}</figcaption>"
    if idx not in b.example_size:
        return f'<figure class="ex">{caption}</figure>'
    H, W = b.example_size[idx]
    cls = _img_cls(H, W)
    full = f'<img src="../examples/{idx}.png" alt="data set example {idx}"{cls}>'
    box = b.box(L.name, pos)
    if box is None:
        return f'<figure class="ex">{full}{caption}</figure>'
    t, lf, bt, r = max(0, box[0]), max(0, box[1]), min(H, box[2]), min(W, box[3])
    if bt <= t or r <= lf:
        return f'<figure class="ex">{full}{caption}</figure>'
    b.crops.add((idx, (t, lf, bt, r)))
    crop = (
        f'<img src="../examples/{idx}_{t}-{lf}-{bt}-{r}.png" alt="receptive field of example {idx}"'
        f"{_img_cls(bt - t, r - lf)}>"
    )
    style = (
        f"top:{100 * t / H:.3f}%;left:{100 * lf / W:.3f}%;"
        f"height:{100 * (bt - t) / H:.3f}%;width:{100 * (r - lf) / W:.3f}%"
    )
    return (
        f'<figure class="ex conv"><div class="pair">{crop}<span class="boxwrap">{full}'
        f'<span class="box" style="{style}"></span></span></div>{caption}</figure>'
    )


def _examples_section(b: _Builder, L: _Layer, u: int, which: str) -> str:
    tk = L.steps.get("topk")
    r = L.row("topk", u)
    if tk is None or r is None:
        return ""
    vkey, ikey = ("values", "indices") if which == "top" else ("bottom_values", "bottom_indices")
    vals, idxs = _opt(tk, vkey), _opt(tk, ikey)
    if vals is None or idxs is None:
        return ""
    pos = _opt(tk, "positions") if which == "top" else _opt(tk, "bottom_positions")
    labels = _opt(tk, "labels") if which == "top" else _opt(tk, "bottom_labels")
    if b.read_label is not None:  # the data set says what its labels are
        labels = None
    figs = []
    kept = sum(1 for i in idxs[r].tolist() if int(i) >= 0)
    for j, (v, idx) in enumerate(zip(vals[r, :MAX_EXAMPLES].tolist(), idxs[r, :MAX_EXAMPLES].tolist())):
        idx = int(idx)
        if idx < 0:
            continue
        lab = _known(labels[r, j]) if labels is not None else b.example_label.get(idx)
        p = pos[r, j].tolist() if pos is not None and pos.dim() == 3 else None
        figs.append(_example_fig(b, L, idx, v, lab, p))
    if which == "top":
        title = f"Top {len(figs)}{f' of {kept}' if kept > len(figs) else ''} data set examples"
        note = (
            "The examples that excite this unit the most, best first: activation in bold, then the label "
            "and the data set index."
        )
    else:
        title = f"Bottom {len(figs)}{f' of {kept}' if kept > len(figs) else ''} data set examples"
        note = "The examples with the lowest activation, lowest first."
    if pos is not None and b.crop_box is not None:
        note += (
            " Left: the receptive field of the strongest position (its row and column follow the index); "
            "right: the whole image with that field boxed in orange."
        )
    return f'<section><h2>{title}</h2><p class="note">{note}</p><div class="strip">{"".join(figs)}</div></section>'


def _views_section(L: _Layer, u: int, stats: dict) -> str:
    r = L.row("featvis", u)
    if r is None or not L.views:
        return ""
    fv = L.steps["featvis"]
    figs = []
    for v in L.views:
        img = fv[v]
        H, W = int(img.shape[-2]), int(img.shape[-1])
        a = stats.get(f"act-{_key(v)}")
        ratio = stats.get(f"ratio-{_key(v)}")
        val = "" if a is None else f"activation {_fmt(a)}"
        if a is not None and ratio is not None:
            val += f" (×{ratio:.2f} data set max)"
        figs.append(
            f'<figure class="view"><img src="img/{_key(v)}/unit_{u:04d}.png" '
            f'alt="{_e(v)} visualization of unit {u}"'
            f'{_img_cls(H, W)}><figcaption><span class="name">{_e(v)}</span><span class="val">{val}</span>'
            f"</figcaption></figure>"
        )
    return (
        '<section><h2>Feature visualizations</h2><p class="note">Inputs optimized to excite this unit, one per '
        f'parameterization.</p><div class="views">{"".join(figs)}</div></section>'
    )


def _legend(lo: str, hi: str, text: str) -> str:
    return (
        f'<div class="legend"><div class="col"><div class="bar"></div><div class="ends"><span>{lo}</span>'
        f"<span>0</span><span>{hi}</span></div></div><span>{text}</span></div>"
    )


def _templates_section(b: _Builder, L: _Layer, u: int) -> str:
    tp = L.steps.get("templates")
    r = L.row("templates", u)
    if tp is None or r is None or _opt(tp, "weights") is None:
        return ""
    w = tp["weights"][r].float()
    if w.dim() == 2:
        w = w[None]
    scale = float(w.abs().max()) or 1.0
    d = b.out / L.slug / "img" / "templates"
    d.mkdir(exist_ok=True)
    names = ["red", "green", "blue"] if w.shape[0] == 3 else [f"channel {c}" for c in range(w.shape[0])]
    figs = []
    for c in range(min(w.shape[0], 8)):
        _save(diverging(w[c], scale), d / f"unit_{u:04d}_c{c}.png")
        cap = f"<figcaption>{_e(names[c])}</figcaption>" if w.shape[0] > 1 else ""
        figs.append(
            f'<figure><img src="img/templates/unit_{u:04d}_c{c}.png" alt="weight template of unit {u}"'
            f"{_img_cls(*w.shape[-2:])}>{cap}</figure>"
        )
    return (
        '<section><h2>Weight template</h2><p class="note">The weights of this unit laid out over the input.</p>'
        + _legend(f"−{_fmt(scale)}", f"+{_fmt(scale)}", "blue: the pixel lowers the activation; red: raises it")
        + f'<div class="templates">{"".join(figs)}</div></section>'
    )


#: the explanation scores an ``attribution.pt`` may hold (``scores``: {metric: [methods, units]}), in the order
#: shown: (key, name, whether higher is better); as :data:`interp.steps.attribution.SCORES`
SCORE_COLUMNS = (
    ("deletion_auc", "deletion AUC", False),
    ("insertion_auc", "insertion AUC", True),
    ("faithfulness", "faithfulness correlation", True),
    ("max_sensitivity", "relative max-sensitivity", False),
    ("sparseness", "Gini sparseness", True),
    ("randomization", "cascading randomization Spearman", False),
)


def _scores(L: _Layer) -> tuple[list[str], dict[str, torch.Tensor]] | None:
    """(methods, {metric: [methods, units] float}) of the layer's attribution result, when it holds scores that
    fit its units; None otherwise."""
    at = L.steps.get("attribution")
    if at is None:
        return None
    methods, table = at.get("score_methods"), at.get("scores")
    if not isinstance(methods, (list, tuple)) or not isinstance(table, dict) or not methods:
        return None
    n = len(L.rows.get("attribution", {}))
    out = {}
    for key, _, _ in SCORE_COLUMNS:
        t = table.get(key)
        if isinstance(t, torch.Tensor) and t.dim() == 2 and tuple(t.shape) == (len(methods), n):
            out[key] = t.double()
    return ([str(m) for m in methods], out) if out else None


def _direction(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def _attribution_section(b: _Builder, L: _Layer, u: int) -> str:
    at = L.steps.get("attribution")
    r = L.row("attribution", u)
    if at is None or r is None or not L.methods:
        return ""
    d = b.out / L.slug / "img" / "attr"
    d.mkdir(exist_ok=True)
    ex = _opt(at, "examples")
    k = int(at[L.methods[0]].shape[1])
    scored = _scores(L)
    rows = []
    if ex is not None:
        cells = []
        for j in range(k):
            _save(ex[r, j], d / f"unit_{u:04d}_ex{j}.png")
            cells.append(
                f'<td><img src="img/attr/unit_{u:04d}_ex{j}.png" alt="example {j}"{_img_cls(*ex.shape[-2:])}></td>'
            )
        rows.append(f"<tr><th>example</th>{''.join(cells)}</tr>")
    legends = []
    any_scores = False
    for m in L.methods:
        maps = at[m][r].float()
        if maps.dim() == 4:  # [k, C, H, W]: one map per example, summed over channels
            maps = maps.sum(1)
        scale = float(maps.abs().max()) or 1.0
        cells = []
        for j in range(k):
            _save(diverging(maps[j], scale), d / f"unit_{u:04d}_{_key(m)}{j}.png")
            cells.append(
                f'<td><img src="img/attr/unit_{u:04d}_{_key(m)}{j}.png" alt="{_e(m)} map {j}"'
                f"{_img_cls(*maps.shape[-2:])}></td>"
            )
        caption = ""
        if scored is not None and m in scored[0]:
            i = scored[0].index(m)
            vals = {key: float(scored[1][key][i, r]) for key, _, _ in SCORE_COLUMNS if key in scored[1]}
            lines = [
                f'<span data-score="{key}" title="{_e(name)} ({_direction(higher)})">{_e(name)} '
                f"{'↑' if higher else '↓'} <b>{_fmt(vals[key])}</b></span>"
                for key, name, higher in SCORE_COLUMNS
                if key in vals
            ]
            if not all(math.isnan(v) for v in vals.values()):  # nan everywhere: the unit was not scored
                any_scores = True
                caption = f'<td class="scores" data-method="{_e(m)}">{"".join(lines)}</td>'
        rows.append(f'<tr><th title="{_e(METHOD_NAMES.get(m, m))}">{_e(m)}</th>{"".join(cells)}{caption}</tr>')
        legends.append(_legend(f"−{_fmt(scale)}", f"+{_fmt(scale)}", _e(METHOD_NAMES.get(m, m))))
    note = (
        "Which pixels of each example raise (red) or lower (blue) this unit's activation. One colour scale per "
        "method, shown below the maps."
    )
    if any_scores:
        note += (
            " Beside each method: its scores on these examples (the mean over them; ↑ higher is better, ↓ lower "
            "is better): deletion and insertion AUC (the unit's value as the most relevant pixels are blacked out "
            "or put back first), faithfulness correlation (of the map's sum over random pixel subsets with the "
            "unit's drop when they are blacked out), max-sensitivity (the map's change under small noise, relative "
            "to its norm), Gini sparseness and cascading randomization (similarity to the map of a model whose "
            "layers are re-initialized)."
        )
    return (
        f'<section><h2>Attributions</h2><p class="note">{note}</p>'
        + f'<div class="scroll"><table class="attr">{"".join(rows)}</table></div>'
        + "".join(legends)
        + "</section>"
    )


def _scores_section(L: _Layer) -> str:
    """The layer page's explanation scores: the median over the scored units per method and metric, then every
    scored unit's own; both tables sort by a click on a column's header."""
    scored = _scores(L)
    if scored is None:
        return ""
    methods, table = scored
    cols = [(key, name, higher) for key, name, higher in SCORE_COLUMNS if key in table]
    units = list(L.rows["attribution"])  # row order of the result file
    done = [
        c
        for c in range(len(units))
        if any(not math.isnan(float(t[i, c])) for t in table.values() for i in range(len(methods)))
    ]
    if not done:
        return ""

    def head(first: list[tuple[str, str]]) -> str:
        cells = [f'<th data-order="{order}">{_e(label)}</th>' for label, order in first]
        cells += [
            f'<th data-order="{"desc" if higher else "asc"}" title="{_direction(higher)}">{_e(name)} '
            f'<span class="dir">({_direction(higher)})</span></th>'
            for _, name, higher in cols
        ]
        return f"<thead><tr>{''.join(cells)}</tr></thead>"

    def number(v: float) -> str:
        return f'<td data-value="{v:.6g}">{_fmt(v)}</td>' if not math.isnan(v) else '<td data-value="">–</td>'

    summary = []
    for i, m in enumerate(methods):
        meds = []
        for key, _, _ in cols:
            vals = table[key][i, done]
            vals = vals[~torch.isnan(vals)]
            meds.append(float(vals.median()) if vals.numel() else float("nan"))
        summary.append(
            f'<tr><td data-value="{_e(m)}" title="{_e(METHOD_NAMES.get(m, m))}">{_e(m)}</td>'
            + "".join(number(v) for v in meds)
            + "</tr>"
        )
    per_unit = []
    for c in done:
        u = units[c]
        for i, m in enumerate(methods):
            per_unit.append(
                f'<tr><td data-value="{u}"><a href="{_unit_file(u)}">unit {u}</a></td><td data-value="{_e(m)}">'
                f"{_e(m)}</td>" + "".join(number(float(table[key][i, c])) for key, _, _ in cols) + "</tr>"
            )
    return (
        '<section class="scores"><h2>Explanation scores</h2><p class="note">How far each attribution method can be '
        f"trusted on this layer: the median over the {len(done)} units scored of each unit's mean over its top "
        "examples. Deletion and insertion AUC follow the unit's value as the pixels the map ranks first are blacked "
        "out or put back; faithfulness correlates the map's sum over random pixel subsets with the unit's drop; "
        "max-sensitivity is the map's change under small noise, relative to its norm; cascading randomization is "
        "the similarity to the map of a model whose layers are re-initialized (a map that does not change does not "
        "explain the model). Click a column's header to sort.</p>"
        + f'<table class="scores sortable" id="scores-summary">{head([("method", "asc")])}<tbody>'
        + "".join(summary)
        + "</tbody></table>"
        + f'<details><summary>Per unit ({len(done)} units)</summary><div class="scroll">'
        + f'<table class="scores sortable" id="scores-units">{head([("unit", "asc"), ("method", "asc")])}<tbody>'
        + "".join(per_unit)
        + "</tbody></table></div></details></section>"
    )


def _hist_section(L: _Layer, u: int, stats: dict) -> str:
    tk = L.steps.get("topk")
    r = L.row("topk", u)
    hist, edges = _opt(tk, "hist"), _opt(tk, "hist_edges")
    if tk is None or r is None or hist is None or edges is None:
        return ""
    counts = hist[r].double().tolist()
    e = edges[r].double().tolist() if edges.dim() == 2 else edges.double().tolist()
    if len(e) != len(counts) + 1 or e[-1] <= e[0]:
        return ""
    W, H, left, right, top, bottom = 560, 190, 46, 12, 22, 34
    pw, ph = W - left - right, H - top - bottom
    lo, hi = e[0], e[-1]

    def x(v: float) -> float:
        return left + pw * (v - lo) / (hi - lo)

    cmax = max(counts) if counts else 0
    scale = math.log10(1 + cmax) if cmax > 0 else 1.0
    path = []
    for c, a, bb in zip(counts, e[:-1], e[1:]):
        if c <= 0:
            continue
        h = ph * math.log10(1 + c) / scale
        path.append(f"M{x(a):.1f} {top + ph:.1f}h{max(x(bb) - x(a), 0.6):.1f}v{-h:.1f}h{-max(x(bb) - x(a), 0.6):.1f}z")
    parts = [
        f'<svg class="hist" width="{W}" height="{H}" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" '
        f'role="img" aria-label="histogram of the activation of unit {u}">',
        f'<path class="bars" d="{"".join(path)}"/>',
        f'<line class="axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}"/>',
    ]
    ticks = [lo, hi] + ([0.0] if lo < 0 < hi and min(-lo, hi) > 0.08 * (hi - lo) else [])
    for t in ticks:
        parts.append(
            f'<line class="axis" x1="{x(t):.1f}" y1="{top + ph}" x2="{x(t):.1f}" y2="{top + ph + 4}"/>'
            f'<text x="{x(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{_fmt(t)}</text>'
        )
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{H - 3}" text-anchor="middle">activation</text>')
    parts.append(
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{int(cmax)}</text>'
        f'<text x="{left - 6}" y="{top + ph}" text-anchor="end">0</text>'
        f'<text transform="translate(12 {top + ph / 2:.0f}) rotate(-90)" '
        'text-anchor="middle">count (log)</text>'
    )
    marks = []
    vals = _opt(tk, "values")
    if vals is not None and vals.shape[1] > 0:
        kth = float(vals[r, -1])
        if lo <= kth <= hi:
            marks.append((kth, "#d9822b", f"top-{vals.shape[1]} cut {_fmt(kth)}"))
    for mv, colour, text in marks:
        parts.append(
            f'<line class="mark" x1="{x(mv):.1f}" y1="{top - 4}" x2="{x(mv):.1f}" y2="{top + ph}" '
            f'stroke="{colour}"/><text x="{min(x(mv), left + pw - 4):.1f}" y="{top - 8}" '
            f'text-anchor="end" style="fill:{colour}">{_e(text)}</text>'
        )
    parts.append("</svg>")
    n = int(sum(counts))
    note = f"The activation of this unit over the {n} examples of the data set (bar heights on a log scale)."
    if L.views and f"act-{_key(L.views[0])}" in stats:
        note += f" The {_e(L.views[0])} visualization reaches {_fmt(stats[f'act-{_key(L.views[0])}'])}."
    return f'<section><h2>Activation over the data set</h2><p class="note">{note}</p>{"".join(parts)}</section>'


def _nearest_section(b: _Builder, L: _Layer, u: int) -> str:
    near = L.near.get(u)
    if not near:
        return ""
    have = set(L.units)
    items = []
    for v, s in near:
        th = _thumb(L, v, b) if v in have else None
        img = (
            f'<img src="{_e(th[0])}" alt="unit {v}"{_img_cls(*th[1])}>'
            if th is not None
            else '<span class="ph">no page</span>'
        )
        label = f"unit {v}"
        inner = f'{img}{label}<span class="sim">cosine {s:.2f}</span>'
        items.append(f'<li><a href="{_unit_file(v)}">{inner}</a></li>' if v in have else f"<li>{inner}</li>")
    return (
        '<section><h2>Nearest units by weight</h2><p class="note">The units of this layer whose incoming weights '
        "point the most in the same direction (cosine similarity).</p>"
        f'<ol class="near">{"".join(items)}</ol></section>'
    )


def _unit_page(b: _Builder, L: _Layer, u: int, stats: dict, prev_u, next_u, layers) -> str:
    prev = (
        f'<a class="btn" rel="prev" href="{_unit_file(prev_u)}">← unit {prev_u}</a>'
        if prev_u is not None
        else '<span class="btn disabled">← first unit</span>'
    )
    nxt = (
        f'<a class="btn" rel="next" href="{_unit_file(next_u)}">unit {next_u} →</a>'
        if next_u is not None
        else '<span class="btn disabled">last unit →</span>'
    )
    header = (
        '<header class="top"><div class="crumbs"><a href="../index.html">Unit atlas</a>'
        f'<span class="sep">/</span><a href="index.html">{_e(L.name)}</a><span class="sep">/</span>'
        f"<b>unit {u}</b></div>"
        f'<div class="nav"><span class="hint">keys ← →</span>{prev}{nxt}</div></header>'
    )
    facts = []
    if "dmax" in stats:
        exact = _opt(L.steps.get("topk"), "dataset_max") is not None
        facts.append((_fmt(stats["dmax"]), "data set max activation" if exact else "top-1 example activation"))
    if L.views and f"act-{_key(L.views[0])}" in stats:
        facts.append((_fmt(stats[f"act-{_key(L.views[0])}"]), f"visualization activation ({_e(L.views[0])})"))
    labs = L.labels.get(u) or []
    lab, n = _majority(labs)
    if lab is not None:
        facts.append((_e(b.label_name(lab)), f"top-k majority label ({n} of {len(labs)})"))
    stat_html = "".join(f'<div class="stat"><b>{v}</b><span>{t}</span></div>' for v, t in facts)
    body = [_views_section(L, u, stats), _examples_section(b, L, u, "top")]
    side = [_hist_section(L, u, stats), _templates_section(b, L, u)]
    side = [s for s in side if s]
    if side:
        body.append('<div class="two">' + "".join(side) + "</div>")
    body += [_attribution_section(b, L, u), _examples_section(b, L, u, "bottom"), _nearest_section(b, L, u)]
    return (
        _head(f"{L.name} unit {u} – unit atlas", "../")
        + header
        + "<main>"
        + f'<h1>{_e(L.name)} · unit {u}</h1><div class="stats">{stat_html}</div>'
        + "".join(s for s in body if s)
        + "</main>"
        + _foot("../")
    )
