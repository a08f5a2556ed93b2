"""Rendering the atlas's pages from the Jinja2 templates in ``interp/atlas/templates`` (autoescaped), and
writing the pictures each page shows (feature visualizations, weight templates, attribution maps).

The templates are written with line breaks and indentation for people; both are dropped when a
template loads (:class:`_Compact`), so the pages come out as before, without them.
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Any, NamedTuple

import jinja2
from jinja2.ext import Extension

from interp.atlas.prepare import (
    MAX_EXAMPLES,
    METHOD_NAMES,
    SCORE_COLUMNS,
    _Builder,
    _Layer,
    columns,
    diverging,
    key,
    known,
    majority,
    save,
    score_table,
    scores,
    thumb,
    thumbnail_views,
    unit_file,
    unit_stats,
    view_thumb,
)

_SMALL = 64  # images whose shorter side is below this are shown with crisp (pixelated) upscaling


class _Compact(Extension):
    """Drops every line break of a template's source, with the indentation after it; ``{{ NL }}`` writes one."""

    _BREAK = re.compile(r"\n[ \t]*")

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return self._BREAK.sub("", source)


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("interp.atlas", "templates"),
        autoescape=True,
        extensions=[_Compact],
        undefined=jinja2.StrictUndefined,
    )
    env.globals["NL"] = "\n"
    return env


def _template(name: str) -> jinja2.Template:
    return _env().get_template(name)  # parsed once, then cached by the environment


def fmt(v: float | None) -> str:
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


def _small(h: int, w: int) -> bool:
    return min(h, w) < _SMALL


def _direction(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


# --- the index and layer pages --------------------------------------------------------------------------


def index_page(b: _Builder, layers: list[_Layer], seconds: float) -> str:
    rows = []
    for L in layers:
        what = []
        if L.views:
            what.append("feature visualization (" + ", ".join(L.views) + ")")
        tk = L.topk
        if tk is not None:
            k = int(tk.values.shape[1])
            what.append(f"top-{k} and bottom-{k} examples" if tk.bottom_indices is not None else f"top-{k} examples")
        if L.methods:
            what.append("attribution (" + ", ".join(L.methods) + ")")
        if L.templates is not None:
            what.append("weight templates")
        rows.append({"slug": L.slug, "name": L.name, "units": len(L.units), "what": "; ".join(what)})
    model = type(b.model).__name__ if b.model is not None else "not given"
    if b.dataset is None:
        data = "not given"
    elif hasattr(b.dataset, "__len__"):
        data = f"{type(b.dataset).__name__} ({len(b.dataset)} examples)"
    else:
        data = type(b.dataset).__name__
    return _template("index.html").render(
        title=f"Unit atlas – {b.run_dir.name}",
        root="",
        run_dir=str(b.run_dir),
        layers=rows,
        n_units=sum(len(L.units) for L in layers),
        model=model,
        data=data,
        seconds=f"{seconds:.1f}",
    )


def card(b: _Builder, L: _Layer, u: int, stats: dict, cols) -> dict[str, Any]:
    """What the layer page shows of a unit: its thumbnails (one per view), numbers and majority label."""
    labs = L.labels.get(u) or []
    lab, n = majority(labs)
    pictures, acts = [], []
    shown = [(v, view_thumb(L, u, v)) for v in thumbnail_views(L.views)]
    if any(th is not None for _, th in shown):
        for i, (v, th) in enumerate(shown):
            pictures.append(
                {"view": v, "src": None if th is None else th[0], "small": th is not None and _small(*th[1])}
            )
            a, ratio = stats.get(f"act-{key(v)}"), stats.get(f"ratio-{key(v)}")
            if a is not None:
                acts.append((v, i == 0, f"{v}: act {fmt(a)}" + (f" · ×{ratio:.2f}" if ratio is not None else "")))
    th = None if pictures else thumb(L, u, b)
    return {
        "href": unit_file(u),
        "unit": u,
        "data": [(name, f"{stats[name]:.6g}") for name, _, _ in cols if name in stats],
        "label": lab,
        "pictures": pictures,
        "thumb": None if th is None else th[0],
        "small": th is not None and _small(*th[1]),
        "acts": acts,
        "dmax": fmt(stats["dmax"]) if "dmax" in stats else None,
        "majority": f"{b.label_name(lab)} ({n}/{len(labs)})" if lab is not None else "",
    }


def layer_page(b: _Builder, L: _Layer, cards: list[dict], cols, label_set: set[int]) -> str:
    table = score_table(L)
    context: dict[str, Any] = {"scores": table}
    if table is not None:
        context["score_columns"] = [
            (name, "desc" if higher else "asc", _direction(higher)) for _, name, higher in table.columns
        ]
        context["score_summary"] = [
            (m, METHOD_NAMES.get(m, m), _numbers(values)) for m, values in zip(table.methods, table.medians)
        ]
        context["score_units"] = [(u, unit_file(u), m, _numbers(values)) for u, m, values in table.per_unit]
    return _template("layer.html").render(
        title=f"{L.name} – unit atlas",
        root="../",
        name=L.name,
        views=thumbnail_views(L.views),
        columns=cols,
        labels=[(lab, b.label_name(lab)) for lab in sorted(label_set)],
        cards=cards,
        **context,
    )


def _numbers(values: list[float]) -> list[tuple[str, str]]:
    return [("", "–") if math.isnan(v) else (f"{v:.6g}", fmt(v)) for v in values]


def write_layer(b: _Builder, L: _Layer, bar) -> None:
    """The layer's folder: its pictures, a page per unit and the layer page."""
    d = b.out / L.slug
    (d / "img").mkdir(parents=True, exist_ok=True)
    fv = L.featvis
    for v in L.views:
        (d / "img" / key(v)).mkdir(exist_ok=True)
    cols = columns(L)
    unit_template = _template("unit.html")
    cards = []
    label_set: set[int] = set()
    for i, u in enumerate(L.units):
        # Feature visualizations: written once, used as thumbnail and on the unit page.
        r = L.row("featvis", u)
        if r is not None and fv is not None:
            for v in L.views:
                save(fv.images[v][r], d / "img" / key(v) / f"unit_{u:04d}.png")
        stats = unit_stats(L, u)
        lab, _ = majority(L.labels.get(u) or [])
        if lab is not None:
            label_set.add(lab)
        prev_u = L.units[i - 1] if i > 0 else None
        next_u = L.units[i + 1] if i + 1 < len(L.units) else None
        page = unit_template.render(unit_context(b, L, u, stats, prev_u, next_u))
        (d / unit_file(u)).write_text(page, encoding="utf-8")
        cards.append(card(b, L, u, stats, cols))
        if bar is not None:
            bar.update(1)
    (d / "index.html").write_text(layer_page(b, L, cards, cols, label_set), encoding="utf-8")


# --- the unit page ---------------------------------------------------------------------------------


def unit_context(b: _Builder, L: _Layer, u: int, stats: dict, prev_u, next_u) -> dict[str, Any]:
    """Everything the unit page shows (writing its weight template and attribution pictures)."""
    facts = []
    if "dmax" in stats:
        facts.append((fmt(stats["dmax"]), "data set max activation"))
    if L.views and f"act-{key(L.views[0])}" in stats:
        facts.append((fmt(stats[f"act-{key(L.views[0])}"]), f"visualization activation ({L.views[0]})"))
    labs = L.labels.get(u) or []
    lab, n = majority(labs)
    if lab is not None:
        facts.append((b.label_name(lab), f"top-k majority label ({n} of {len(labs)})"))
    return {
        "title": f"{L.name} unit {u} – unit atlas",
        "root": "../",
        "name": L.name,
        "unit": u,
        "prev": None if prev_u is None else {"href": unit_file(prev_u), "unit": prev_u},
        "next": None if next_u is None else {"href": unit_file(next_u), "unit": next_u},
        "facts": facts,
        "views": _views(L, u, stats),
        "top": _examples(b, L, u, "top"),
        "hist": _hist(L, u, stats),
        "weights": _weights(b, L, u),
        "attribution": _attribution(b, L, u),
        "bottom": _examples(b, L, u, "bottom"),
        "near": _nearest(b, L, u),
    }


def _views(L: _Layer, u: int, stats: dict) -> list[dict]:
    fv = L.featvis
    if fv is None or L.row("featvis", u) is None:
        return []
    out = []
    for v in L.views:
        img = fv.images[v]
        a, ratio = stats.get(f"act-{key(v)}"), stats.get(f"ratio-{key(v)}")
        value = "" if a is None else f"activation {fmt(a)}"
        if a is not None and ratio is not None:
            value += f" (×{ratio:.2f} data set max)"
        src = f"img/{key(v)}/unit_{u:04d}.png"
        out.append({"view": v, "src": src, "small": _small(int(img.shape[-2]), int(img.shape[-1])), "value": value})
    return out


def _examples(b: _Builder, L: _Layer, u: int, which: str) -> dict | None:
    tk = L.topk
    r = L.row("topk", u)
    if tk is None or r is None:
        return None
    top = which == "top"
    vals, idxs = (tk.values, tk.indices) if top else (tk.bottom_values, tk.bottom_indices)
    if vals is None or idxs is None:
        return None
    pos = tk.positions if top else None  # the bottom-k keeps no positions
    labels = tk.labels if top else None
    if b.read_label is not None:  # the data set says what its labels are
        labels = None
    figures = []
    for j, (v, idx) in enumerate(zip(vals[r, :MAX_EXAMPLES].tolist(), idxs[r, :MAX_EXAMPLES].tolist())):
        idx = int(idx)
        if idx < 0:
            continue
        lab = known(labels[r, j]) if labels is not None else b.example_label.get(idx)
        p = pos[r, j].tolist() if pos is not None else None
        figures.append(_example(b, L, idx, v, lab, p))
    return {
        "which": "Top" if top else "Bottom",
        "figures": figures,
        "kept": sum(1 for i in idxs[r].tolist() if int(i) >= 0),
        "crops": pos is not None and b.crop_box is not None,
    }


class _Crop(NamedTuple):
    file: str
    small: bool
    style: str


class _Example(NamedTuple):
    """One data set example on a unit page (attributes, not dict keys: the template reads thousands)."""

    number: int  # the data set index
    value: str
    label: str | None
    at: str
    shown: bool = False
    small: bool = False
    crop: _Crop | None = None


def _example(b: _Builder, L: _Layer, idx: int, value: float, label, pos) -> _Example:
    fig = _Example(
        idx,
        fmt(value),
        None if label is None else b.label_name(label),
        f"({int(pos[0])}, {int(pos[1])})" if pos is not None else "",
    )
    if idx not in b.example_size:
        return fig
    H, W = b.example_size[idx]
    fig = fig._replace(shown=True, small=_small(H, W))
    box = b.box(L.name, pos)
    if box is None:
        return fig
    t, lf, bt, r = max(0, box[0]), max(0, box[1]), min(H, box[2]), min(W, box[3])
    if bt <= t or r <= lf:
        return fig
    b.crops.add((idx, (t, lf, bt, r)))
    style = (
        f"top:{100 * t / H:.3f}%;left:{100 * lf / W:.3f}%;"
        f"height:{100 * (bt - t) / H:.3f}%;width:{100 * (r - lf) / W:.3f}%"
    )
    return fig._replace(crop=_Crop(f"{idx}_{t}-{lf}-{bt}-{r}.png", _small(bt - t, r - lf), style))


def _weights(b: _Builder, L: _Layer, u: int) -> dict | None:
    tp = L.templates
    r = L.row("templates", u)
    if tp is None or r is None:
        return None
    w = tp.weights[r].float()
    if w.dim() == 2:
        w = w[None]
    scale = float(w.abs().max()) or 1.0
    d = b.out / L.slug / "img" / "templates"
    d.mkdir(exist_ok=True)
    names = ["red", "green", "blue"] if w.shape[0] == 3 else [f"channel {c}" for c in range(w.shape[0])]
    figures = []
    for c in range(min(w.shape[0], 8)):
        save(diverging(w[c], scale), d / f"unit_{u:04d}_c{c}.png")
        figures.append({"src": f"img/templates/unit_{u:04d}_c{c}.png", "caption": names[c] if w.shape[0] > 1 else ""})
    return {"lo": f"−{fmt(scale)}", "hi": f"+{fmt(scale)}", "figures": figures, "small": _small(*w.shape[-2:])}


def _attribution(b: _Builder, L: _Layer, u: int) -> dict | None:
    at = L.attribution
    r = L.row("attribution", u)
    if at is None or r is None or not L.methods:
        return None
    d = b.out / L.slug / "img" / "attr"
    d.mkdir(exist_ok=True)
    ex = at.examples
    k = int(at.maps[L.methods[0]].shape[1])
    scored = scores(L)
    examples = []
    for j in range(k):
        save(ex[r, j], d / f"unit_{u:04d}_ex{j}.png")
        examples.append(f"img/attr/unit_{u:04d}_ex{j}.png")
    methods = []
    any_scores = False
    for m in L.methods:
        maps = at.maps[m][r].float()
        if maps.dim() == 4:  # [k, C, H, W]: one map per example, summed over channels
            maps = maps.sum(1)
        scale = float(maps.abs().max()) or 1.0
        srcs = []
        for j in range(k):
            save(diverging(maps[j], scale), d / f"unit_{u:04d}_{key(m)}{j}.png")
            srcs.append(f"img/attr/unit_{u:04d}_{key(m)}{j}.png")
        lines = []
        if scored is not None and m in scored[0]:
            i = scored[0].index(m)
            vals = {name: float(scored[1][name][i, r]) for name, _, _ in SCORE_COLUMNS if name in scored[1]}
            if not all(math.isnan(v) for v in vals.values()):  # nan everywhere: the unit was not scored
                any_scores = True
                lines = [
                    (name, label, _direction(higher), "↑" if higher else "↓", fmt(vals[name]))
                    for name, label, higher in SCORE_COLUMNS
                    if name in vals
                ]
        title = METHOD_NAMES.get(m, m)
        small = _small(*maps.shape[-2:])
        lo, hi = f"−{fmt(scale)}", f"+{fmt(scale)}"
        methods.append({"name": m, "title": title, "maps": srcs, "small": small, "scores": lines, "lo": lo, "hi": hi})
    small = _small(*ex.shape[-2:])
    return {"examples": examples, "small": small, "methods": methods, "scored": any_scores}


def _hist(L: _Layer, u: int, stats: dict) -> dict | None:
    tk = L.topk
    r = L.row("topk", u)
    if tk is None or r is None or tk.hist is None or tk.hist_edges is None:
        return None
    counts = tk.hist[r].double().tolist()
    e = tk.hist_edges[r].double().tolist()
    if len(e) != len(counts) + 1 or e[-1] <= e[0]:
        return None
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
    ticks = [lo, hi] + ([0.0] if lo < 0 < hi and min(-lo, hi) > 0.08 * (hi - lo) else [])
    marks = []
    vals = tk.values
    if vals.shape[1] > 0:
        kth = float(vals[r, -1])
        if lo <= kth <= hi:
            xm, colour = f"{x(kth):.1f}", "#d9822b"
            text = f"top-{vals.shape[1]} cut {fmt(kth)}"
            marks.append((xm, top - 4, top + ph, colour, f"{min(x(kth), left + pw - 4):.1f}", top - 8, text))
    view = L.views[0] if L.views and f"act-{key(L.views[0])}" in stats else None
    return {
        "n": int(sum(counts)),
        "view": view,
        "reached": fmt(stats[f"act-{key(view)}"]) if view is not None else "",
        "W": W,
        "H": H,
        "path": "".join(path),
        "axes": [(left, top + ph, left + pw, top + ph), (left, top, left, top + ph)],
        "ticks": [(f"{x(t):.1f}", top + ph, top + ph + 4, top + ph + 16, fmt(t)) for t in ticks],
        "mid": f"{left + pw / 2:.1f}",
        "bottom": H - 3,
        "left": left - 6,
        "top": top + 4,
        "zero": top + ph,
        "cmax": int(cmax),
        "middle": f"{top + ph / 2:.0f}",
        "marks": marks,
    }


def _nearest(b: _Builder, L: _Layer, u: int) -> list[dict]:
    have = set(L.units)
    out = []
    for v, s in L.near.get(u) or []:
        th = thumb(L, v, b) if v in have else None
        out.append(
            {
                "unit": v,
                "href": unit_file(v) if v in have else None,
                "src": None if th is None else th[0],
                "small": th is not None and _small(*th[1]),
                "cosine": f"{s:.2f}",
            }
        )
    return out
