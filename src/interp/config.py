"""Configuration helpers shared by both commands: where the Hydra configs are, the resolvers
they use, and building callbacks from a config node.

Both ``interp.cli`` and the Hydra tasks in ``interp.apps`` import this module; it imports neither.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from interp.errors import InterpError

CONFIG_DIR_ENV = "INTERP_CONFIG_DIR"


def config_dir() -> str:
    """The Hydra config folder: ``$INTERP_CONFIG_DIR`` or ``configs/`` of the source checkout."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return str(Path(env).resolve())
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "configs" / "train.yaml").exists():
            return str(parent / "configs")
    raise InterpError(f"cannot find the configs/ folder above {here.parent}; set ${CONFIG_DIR_ENV}")


def create_run_dir(path: str) -> str:
    """Create the run folder ``path`` atomically (exclusive ``mkdir``); when it exists, the first
    free ``path-1``, ``path-2``, ...: two runs started in the same second never share a folder."""
    from interp.runs import make_run_dir

    target = Path(path)
    return str(make_run_dir(target.parent, target.name))


MAX_NAME = 100
"""The longest experiment name (a folder name under ``runs_dir``)."""


def check_plain_name(value: Any, key: str) -> str:
    """``value`` as a folder name of its own: not empty, no path separator, not ``.`` or ``..``,
    at most :data:`MAX_NAME` characters.

    >>> check_plain_name("mnist_mlp", "experiment")
    'mnist_mlp'
    >>> check_plain_name("../escape", "experiment")
    Traceback (most recent call last):
    interp.errors.InterpError: experiment='../escape' must be a plain folder name (no '/', not '.' or '..')
    """
    name = "" if value is None else str(value)
    if not name.strip():
        raise InterpError(f"{key} must not be empty")
    if "/" in name or "\\" in name or os.sep in name or name in (".", "..") or "\0" in name:
        raise InterpError(f"{key}={name!r} must be a plain folder name (no '/', not '.' or '..')")
    if len(name) > MAX_NAME:
        raise InterpError(f"{key} is {len(name)} characters long; at most {MAX_NAME}")
    return name


def run_dir_path(runs_dir: Any, experiment: Any, stamp: Any) -> str:
    """``runs_dir/experiment/stamp`` after checking each part: ``runs_dir`` is not empty, and
    ``experiment`` and ``stamp`` are plain folder names, so a run never lands outside ``runs_dir``."""
    root = "" if runs_dir is None else str(runs_dir)
    if not root.strip():
        raise InterpError("runs_dir must not be empty (the default is runs)")
    return str(Path(root) / check_plain_name(experiment, "experiment") / check_plain_name(stamp, "run folder name"))


_resolved: dict[tuple[str, ...], str] = {}


def _unique_dir_resolver(*parts: Any) -> str:
    """``${unique_dir:runs_dir,experiment,stamp}`` (each part checked, see :func:`run_dir_path`)
    or ``${unique_dir:path}``: a new run folder."""
    # Hydra resolves hydra.run.dir more than once; answer the same folder every time.
    key = tuple(str(p) for p in parts)
    if key not in _resolved:
        if len(parts) == 3:
            path = run_dir_path(*parts)
        elif len(parts) == 1 and str(parts[0]).strip():
            path = str(parts[0])
        else:
            raise InterpError("unique_dir takes runs_dir,experiment,stamp or one path")
        _resolved[key] = create_run_dir(path)
    return _resolved[key]


MAX_UNITS = 65_536
"""The most units one setting may name (no layer here has more; the layer's own size is checked
where the layer is known)."""


def _bounded_range(text: str, start: int, stop: int) -> list[int]:
    """``range(start, stop)`` as a list, refused before it is built when it is too long."""
    if stop - start > MAX_UNITS:
        raise InterpError(f"units={text!r} names {stop - start:,} units; at most {MAX_UNITS:,} at once")
    return list(range(start, stop))


def parse_units(text: Any) -> list[int] | None:
    """Units as written in a config or on the command line, as the Python API takes them.

    ``"all"`` or null: None (every unit); ``"0-63"``: 0 to 63 inclusive; ``"0:64"``: 0 to 63;
    ``"3,7,32"``, ``32`` or a list: those units. The layer size is checked later, where the
    layer is known.

    >>> parse_units("0-3"), parse_units("2:4"), parse_units("3,7"), parse_units(5), parse_units("all")
    ([0, 1, 2, 3], [2, 3], [3, 7], [5], None)
    """
    if text is None or text == "all":
        return None
    if isinstance(text, range):
        text = list(text)
    if isinstance(text, bool):
        raise InterpError(f"cannot read units={text!r}: use 'all', '0-63', '0:64', '3,7,32' or a list")
    if isinstance(text, int):
        units = [text]
    elif isinstance(text, str):
        spec = text.replace(" ", "")
        if m := re.fullmatch(r"(\d+)-(\d+)", spec):
            units = _bounded_range(text, int(m[1]), int(m[2]) + 1)
        elif m := re.fullmatch(r"(\d+):(\d+)", spec):
            units = _bounded_range(text, int(m[1]), int(m[2]))
        elif re.fullmatch(r"-?\d+(,-?\d+)*", spec):
            units = [int(u) for u in spec.split(",")]
            if len(units) > MAX_UNITS:
                raise InterpError(f"units names {len(units):,} units; at most {MAX_UNITS:,} at once")
        else:
            raise InterpError(f"cannot read units={text!r}: use 'all', '0-63', '0:64', '3,7,32' or a list")
    else:
        try:
            units = [int(u) for u in text]
        except (TypeError, ValueError):
            raise InterpError(f"cannot read units={text!r}: use 'all', '0-63', '0:64', '3,7,32' or a list") from None
    if not units:
        raise InterpError(f"units={text!r} names no unit")
    negative = [u for u in units if u < 0]
    if negative:
        raise InterpError(f"units must be >= 0, got {negative[0]}")
    return units


def register_resolvers() -> None:
    """``${unique_dir:runs_dir,experiment,stamp}`` (a new run folder) and ``${unit_list:spec}`` (a unit
    list, see :func:`parse_units`)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", _unique_dir_resolver)
    if not OmegaConf.has_resolver("unit_list"):
        OmegaConf.register_new_resolver("unit_list", parse_units)


def build_callbacks(node: Mapping[str, Any] | None, **overrides: Any) -> list[Any]:
    """Instantiate every entry of a ``callbacks`` config node (name -> config with ``_target_``),
    in order; ``overrides`` are passed to each one's constructor."""
    from hydra.utils import instantiate

    if not node:
        return []
    return [instantiate(c, **overrides) for c in node.values() if c is not None and "_target_" in c]
