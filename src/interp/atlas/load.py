"""Loading a run's interpretation results for the atlas: the result files under ``<run>/interp``, and the
folder names that hold a layer's results (any layer name, as one plain folder)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from interp.records import RECORDS, Record, read_record

__all__ = ["STEPS", "CropBox", "layer_folder", "layer_from_folder", "load_results", "result_name"]

#: ``crop_box(layer, (row, col)) -> (top, left, bottom, right)``: the input pixels that the
#: activation at ``(row, col)`` of ``layer`` sees (bottom and right exclusive).
CropBox = Callable[[str, tuple[int, int]], tuple[int, int, int, int]]

#: result files read, per interpretation step: ``<run>/interp/<step>/<layer>/<file>``
STEPS = {kind: RECORDS[kind].FILE for kind in ("featvis", "topk", "attribution", "templates")}


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


def load_results(run_dir: str | Path) -> dict[str, dict[str, Record]]:
    """``{layer: {step: record}}`` for every result file under ``<run_dir>/interp`` (the records of
    :mod:`interp.records`, read by :func:`~interp.records.read_record`).

    Files are read with ``weights_only=True``: a file holding other Python objects is refused
    (an :class:`InterpError` of one line naming it), and no code in it runs; so is a file of a
    version this code does not read. Files written before versions are migrated. Layer names are
    decoded from their folder names (:func:`layer_from_folder`).
    """
    interp = Path(run_dir) / "interp"
    layers: dict[str, dict[str, Record]] = {}
    for step, fname in STEPS.items():
        base = interp / step
        if not base.is_dir():
            continue
        for layer, path in _result_files(base, fname):
            layers.setdefault(layer, {})[step] = read_record(path, step)
    return layers
