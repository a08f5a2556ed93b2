"""Preparing the atlas's data: the layers and their units, the data set examples (written once), labels,
nearest units by weight, the per-unit numbers the layer pages sort by, and the explanation score tables.

Nothing here writes HTML (:mod:`interp.atlas.render` does); the images it writes are the data set
examples and their receptive-field crops, shared by every page.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp.atlas.load import CropBox
from interp.images import diverging_colormap, to_uint8, write_png
from interp.records import AttributionRecord, FeatVisRecord, Record, TemplatesRecord, TopKRecord

#: how the attribution methods are named in legends
METHOD_NAMES = {
    "ig": "ig: integrated gradients",
    "saliency": "saliency: input gradient",
    "gradxinput": "gradient × input",
    "smoothgrad": "SmoothGrad",
    "occlusion": "occlusion",
    "lrp": "lrp: LRP (ε+♭, Zennit)",
}
NEAREST = 8  # nearest units listed on a unit page
#: the most top (and bottom) examples a unit page shows; a result with a larger k keeps the rest
#: in its file (the pages of a k=6000 result would weigh megabytes each)
MAX_EXAMPLES = 64

#: Feature visualization views from the most to the least legible (what a person reads, measured by
#: ``benchmarks/legibility.py`` and ``benchmarks/conv_legibility.py``): the layer grid shows the first one
#: the run has, with a switch to the others; views not named here come after, in the run's order.
LEGIBLE_ORDER = ("prototype", "prior", "accentuation", "maco", "plain")

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

# --- pictures ---------------------------------------------------------------------------------------


def save(img: torch.Tensor, path: Path) -> None:
    """An image ([C, H, W] or [H, W] in [0, 1]) as a PNG file: grey when it has one channel."""
    write_png(to_uint8(img, grey=True), path)


def diverging(m: torch.Tensor, scale: float) -> torch.Tensor:
    """A signed map [H, W] as colours [3, H, W]: blue (-scale) .. white (0) .. red (+scale), in the one
    colour map of the package (:func:`interp.optvis.templates.diverging_colormap`)."""
    return diverging_colormap(m.detach().float().reshape(m.shape[-2], m.shape[-1]), vmax=max(float(scale), 1e-12))


# --- small helpers ------------------------------------------------------------------------------------


def key(s: str) -> str:
    """A name as lowercase letters, digits and dashes (file names, column keys)."""
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "x"


def unit_file(u: int) -> str:
    return f"unit_{u:04d}.html"


def as_label(v) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def known(label) -> int | None:
    """A saved label, None for the -1 that marks a missing one."""
    value = as_label(label)
    return value if value is not None and value >= 0 else None


def majority(labels: Sequence[int | None]) -> tuple[int | None, int]:
    c = Counter(v for v in labels if v is not None)
    if not c:
        return None, 0
    ((lab, n),) = c.most_common(1)
    return lab, n


def thumbnail_views(views: Sequence[str]) -> list[str]:
    """``views`` ordered for the layer grid: the most legible first (:data:`LEGIBLE_ORDER`).

    >>> thumbnail_views(["plain", "prior"])
    ['prior', 'plain']
    """
    rank = {v: i for i, v in enumerate(LEGIBLE_ORDER)}
    return sorted(views, key=lambda v: (rank.get(v, len(rank)), list(views).index(v)))


# --- layers -----------------------------------------------------------------------------------------


@dataclass
class _Layer:
    name: str
    steps: dict[str, Record]
    slug: str = ""
    units: list[int] = field(default_factory=list)
    rows: dict[str, dict[int, int]] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    labels: dict[int, list[int | None]] = field(default_factory=dict)  # unit -> top-k labels
    near: dict[int, list[tuple[int, float]]] = field(default_factory=dict)

    def row(self, step: str, unit: int) -> int | None:
        return self.rows.get(step, {}).get(unit)

    @property
    def featvis(self) -> FeatVisRecord | None:
        r = self.steps.get("featvis")
        return r if isinstance(r, FeatVisRecord) else None

    @property
    def topk(self) -> TopKRecord | None:
        r = self.steps.get("topk")
        return r if isinstance(r, TopKRecord) else None

    @property
    def attribution(self) -> AttributionRecord | None:
        r = self.steps.get("attribution")
        return r if isinstance(r, AttributionRecord) else None

    @property
    def templates(self) -> TemplatesRecord | None:
        r = self.steps.get("templates")
        return r if isinstance(r, TemplatesRecord) else None


def _rows(record: Record) -> dict[int, int]:
    return {u: i for i, u in enumerate(getattr(record, "units", []))}


def _slug(name: str, taken: set[str]) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "layer"
    base, i = s, 2
    while s.lower() in taken or s.lower() in ("examples", "index.html", "atlas.css", "atlas.js"):
        s, i = f"{base}_{i}", i + 1
    taken.add(s.lower())
    return s


def make_layers(results: dict[str, dict[str, Record]]) -> list[_Layer]:
    """The layers of ``results`` (:func:`~interp.atlas.load.load_results`), sorted by name, each with
    its own folder name, units, feature visualization views and attribution methods."""
    taken: set[str] = set()
    layers = []
    for name in sorted(results):
        L = _Layer(name, results[name], slug=_slug(name, taken))
        L.rows = {step: _rows(d) for step, d in L.steps.items()}
        L.units = sorted(set().union(*[set(r) for r in L.rows.values()]))
        if L.featvis is not None:
            L.views = list(L.featvis.images)
        if L.attribution is not None:
            L.methods = list(L.attribution.maps)
        layers.append(L)
    return layers


def needed_examples(layers: Sequence[_Layer]) -> list[int]:
    """The data set indices every page shows (top and bottom examples, at most MAX_EXAMPLES each)."""
    needed: list[int] = []
    for L in layers:
        tk = L.topk
        if tk is None:
            continue
        for t in (tk.indices, tk.bottom_indices):
            if t is not None:
                needed.extend(int(i) for i in t[:, :MAX_EXAMPLES].reshape(-1).tolist())
    return needed


# --- the builder: the data set and its examples ----------------------------------------------------


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
        return img, as_label(label)

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
                labels = [as_label(v) for v in labels] if labels is not None else [None] * len(indices)
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
                write_png(arr, path)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                imgs, labels = self._items(part)
                if isinstance(imgs, torch.Tensor):  # one conversion for the whole chunk
                    arrays = list(to_uint8(imgs, grey=True))
                else:
                    arrays = [to_uint8(img, grey=True) for img in imgs]
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
            save(img[:, t:b, lf:r], ex / f"{idx}_{t}-{lf}-{b}-{r}.png")

    def label_name(self, label) -> str:
        if label is None:
            return ""
        if self.class_names is not None and 0 <= int(label) < len(self.class_names):
            return str(self.class_names[int(label)])
        return str(label)


# --- per-layer preparation --------------------------------------------------------------------------


def prepare_labels(b: _Builder, L: _Layer) -> None:
    tk = L.topk
    if tk is None:
        return
    labels, idx = tk.labels, tk.indices
    if b.read_label is not None:  # the data set says what its labels are
        labels = None
    for u, r in L.rows["topk"].items():
        if labels is not None:
            L.labels[u] = [known(v) for v in labels[r].tolist()]
        elif b.dataset is not None:
            L.labels[u] = [b.example_label.get(int(i)) for i in idx[r, :MAX_EXAMPLES].tolist() if int(i) >= 0]


def prepare_nearest(b: _Builder, L: _Layer) -> None:
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
        k = min(NEAREST, w.shape[0] - 1)
        vals, idx = sim.topk(k, dim=1)
    for u, vs, ix in zip(units, vals.tolist(), idx.tolist()):
        L.near[u] = list(zip(ix, vs))


def columns(L: _Layer) -> list[tuple[str, str, str]]:
    """(key, label, default order) of the numeric columns the layer page sorts by."""
    cols = [("unit", "unit number", "asc")]
    fv, tk = L.featvis, L.topk
    has_max = tk is not None and tk.values.shape[1] > 0
    for v in L.views:
        if fv is not None and v in fv.activations:
            cols.append((f"act-{key(v)}", f"activation ({v})", "desc"))
            if has_max:
                cols.append((f"ratio-{key(v)}", f"ratio to data set max ({v})", "desc"))
    if has_max:
        cols.append(("dmax", "data set max activation", "desc"))
    if L.labels:
        cols.append(("purity", "top-k label agreement", "desc"))
    for step, name in _extra_columns(L):
        cols.append((f"x-{key(step)}-{key(name)}", name.replace("_", " "), "desc"))
    return cols


def _extra_columns(L: _Layer) -> list[tuple[str, str]]:
    """The other per-unit numbers of the feature visualization and top-k records (their ``columns``, e.g.
    ``legibility``)."""
    records = (("featvis", L.featvis), ("topk", L.topk))
    return [(step, name) for step, r in records if r is not None for name in r.columns]


def unit_stats(L: _Layer, u: int) -> dict[str, float]:
    """The unit's numbers, by column key (:func:`columns`)."""
    fv, tk = L.featvis, L.topk
    s: dict[str, float] = {"unit": float(u)}
    dmax = None
    r = L.row("topk", u)
    if r is not None and tk is not None and tk.values.shape[1] > 0:
        dmax = float(tk.dataset_max[r])
        s["dmax"] = dmax
    r = L.row("featvis", u)
    if r is not None and fv is not None:
        for v in L.views:
            a = fv.activations.get(v)
            if a is not None:
                s[f"act-{key(v)}"] = float(a[r])
                if dmax is not None and dmax > 0:
                    s[f"ratio-{key(v)}"] = float(a[r]) / dmax
    labs = L.labels.get(u)
    if labs:
        lab, n = majority(labs)
        if lab is not None:
            s["purity"] = n / len(labs)
    for step, name in _extra_columns(L):
        r = L.row(step, u)
        record = L.featvis if step == "featvis" else L.topk
        if r is not None and record is not None:
            s[f"x-{key(step)}-{key(name)}"] = float(record.columns[name][r])
    return s


def view_thumb(L: _Layer, u: int, view: str) -> tuple[str, tuple[int, int]] | None:
    """(path relative to the layer folder, (H, W)) of the unit's picture in ``view``, if it has one."""
    if L.featvis is None or view not in L.views or L.row("featvis", u) is None:
        return None
    img = L.featvis.images[view]
    return f"img/{key(view)}/unit_{u:04d}.png", (int(img.shape[-2]), int(img.shape[-1]))


def thumb(L: _Layer, u: int, b: _Builder) -> tuple[str, tuple[int, int]] | None:
    """(path relative to the layer folder, (H, W)) of the unit's thumbnail, if it has one: the most
    legible view, else the unit's top example."""
    if L.views and L.row("featvis", u) is not None:
        return view_thumb(L, u, thumbnail_views(L.views)[0])
    r = L.row("topk", u)
    if r is not None and L.topk is not None and b.dataset is not None and L.topk.indices.shape[1] > 0:
        idx = int(L.topk.indices[r, 0])
        if idx in b.example_size:
            return f"../examples/{idx}.png", b.example_size[idx]
    return None


# --- explanation scores -------------------------------------------------------------------------------


def scores(L: _Layer) -> tuple[list[str], dict[str, torch.Tensor]] | None:
    """(methods, {metric: [methods, units] float}) of the layer's attribution result, when it holds scores that
    fit its units; None otherwise."""
    at = L.attribution
    if at is None or not at.score_methods or at.scores is None:
        return None
    out = {name: at.scores[name].double() for name, _, _ in SCORE_COLUMNS if name in at.scores}
    return (list(at.score_methods), out) if out else None


@dataclass
class ScoreTable:
    """The layer's explanation scores: per method the median over the scored units, and every scored unit's
    own (``nan`` where a metric has no value)."""

    columns: list[tuple[str, str, bool]]  # (key, name, higher is better) of the metrics present
    methods: list[str]
    medians: list[list[float]]  # [method][column]
    per_unit: list[tuple[int, str, list[float]]]  # (unit, method, [column])

    @property
    def units(self) -> int:
        return len({u for u, _, _ in self.per_unit})


def score_table(L: _Layer) -> ScoreTable | None:
    """The layer page's score tables (:class:`ScoreTable`), or None when no unit was scored."""
    scored = scores(L)
    if scored is None:
        return None
    methods, table = scored
    cols = [(name, title, higher) for name, title, higher in SCORE_COLUMNS if name in table]
    units = list(L.rows["attribution"])  # row order of the result file
    done = [
        c
        for c in range(len(units))
        if any(not math.isnan(float(t[i, c])) for t in table.values() for i in range(len(methods)))
    ]
    if not done:
        return None
    medians = []
    for i in range(len(methods)):
        meds = []
        for name, _, _ in cols:
            vals = table[name][i, done]
            vals = vals[~torch.isnan(vals)]
            meds.append(float(vals.median()) if vals.numel() else float("nan"))
        medians.append(meds)
    per_unit = [
        (units[c], m, [float(table[name][i, c]) for name, _, _ in cols]) for c in done for i, m in enumerate(methods)
    ]
    return ScoreTable(cols, methods, medians, per_unit)
