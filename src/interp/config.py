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


_resolved: dict[str, str] = {}


def _unique_dir_resolver(path: str) -> str:
    # Hydra resolves hydra.run.dir more than once; answer the same folder every time.
    if path not in _resolved:
        _resolved[path] = create_run_dir(path)
    return _resolved[path]


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
    if isinstance(text, bool):
        raise InterpError(f"cannot read units={text!r}: use 'all', '0-63', '0:64', '3,7,32' or a list")
    if isinstance(text, int):
        units = [text]
    elif isinstance(text, str):
        spec = text.replace(" ", "")
        if m := re.fullmatch(r"(\d+)-(\d+)", spec):
            units = list(range(int(m[1]), int(m[2]) + 1))
        elif m := re.fullmatch(r"(\d+):(\d+)", spec):
            units = list(range(int(m[1]), int(m[2])))
        elif re.fullmatch(r"-?\d+(,-?\d+)*", spec):
            units = [int(u) for u in spec.split(",")]
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
    """``${unique_dir:path}`` (a new run folder) and ``${unit_list:spec}`` (a unit list, see :func:`parse_units`)."""
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
