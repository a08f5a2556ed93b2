"""Building the unit atlas: static HTML pages over the result files of a run.

The interpretation steps save their results under ``<run>/interp/<step>/<layer>/<step>.pt``
(``featvis``, ``topk``, ``attribution``, ``templates``: records of :mod:`interp.records`).
:func:`build_atlas` reads them and writes, under ``<run>/atlas/``::

    index.html                    the layers, with their unit counts and what was computed
    atlas.css, atlas.js           style sheet; keyboard navigation, sorting and filtering
    examples/<idx>.png            data set examples, one file per data set index, shared by all units
    examples/<idx>_<t>-<l>-<b>-<r>.png   receptive-field crops (conv layers)
    <layer>/index.html            every unit of the layer as a thumbnail, sortable and filterable
    <layer>/unit_0032.html        one page per unit
    <layer>/img/...               feature visualizations, weight templates, attribution maps

Pages are static files that open from ``file://`` without a network: images are PNG files next
to them, the histogram is an inline SVG, and nothing is fetched from elsewhere.

The work is split in three: :mod:`interp.atlas.load` reads the result files, :mod:`interp.atlas.prepare`
gathers what the pages show and :mod:`interp.atlas.render` writes the pages from the Jinja2 templates
in ``interp/atlas/templates``. This module puts them together (:func:`build_atlas`) and re-exports
the names other modules import from it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from interp.atlas.load import STEPS, CropBox, layer_folder, layer_from_folder, load_results, result_name
from interp.atlas.prepare import (
    LEGIBLE_ORDER,
    MAX_EXAMPLES,
    METHOD_NAMES,
    SCORE_COLUMNS,
    _Builder,
    diverging,
    make_layers,
    needed_examples,
    prepare_labels,
    prepare_nearest,
    thumbnail_views,
)
from interp.atlas.render import index_page, write_layer
from interp.atlas.static import CSS, JS
from interp.errors import InterpError
from interp.images import encode_png as png_bytes
from interp.records import Record

__all__ = [
    "LEGIBLE_ORDER",
    "MAX_EXAMPLES",
    "METHOD_NAMES",
    "SCORE_COLUMNS",
    "STEPS",
    "CropBox",
    "build_atlas",
    "diverging",
    "layer_folder",
    "layer_from_folder",
    "load_results",
    "png_bytes",
    "result_name",
    "thumbnail_views",
]


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


def _write_atlas(b: _Builder, results: dict[str, dict[str, Record]]) -> Path:
    """Write every page and image of the atlas under ``b.out``; returns the index page."""
    out = b.out
    start = time.perf_counter()
    layers = make_layers(results)
    if b.dataset is not None:  # every data set example any page shows, written once
        b.write_examples(needed_examples(layers))
    for L in layers:
        prepare_labels(b, L)
        prepare_nearest(b, L)

    (out / "atlas.css").write_text(CSS, encoding="utf-8")
    (out / "atlas.js").write_text(JS, encoding="utf-8")

    total = sum(len(L.units) for L in layers)
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="atlas", unit="unit", disable=not b.progress)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None
    for L in layers:
        write_layer(b, L, bar)
    if bar is not None:
        bar.close()
    b.write_crops()
    index = out / "index.html"
    index.write_text(index_page(b, layers, time.perf_counter() - start), encoding="utf-8")
    return index
