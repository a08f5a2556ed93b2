"""The base of the result records (:class:`Record`) and the checks their readers share: errors of one line."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

import torch

from interp.errors import InterpError

__all__ = ["FORMAT_VERSION", "READS", "Record"]

#: the version of the files :func:`save_record` writes
FORMAT_VERSION = 1
#: the versions :func:`read_record` reads (0: written before versions, migrated when read)
READS = (0, 1)


def _same(a: Any, b: Any) -> bool:
    """Equal values: tensors of one dtype and shape with the same elements (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.is_floating_point():
            return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
        return torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _stored(value: Any) -> Any:
    """``value`` as written: tensors detached, on the CPU, in storage of their own."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    return value


class Record:
    """A result file's content. Subclasses are dataclasses naming their ``KIND`` (the step folder and the
    ``format`` key), their ``FILE`` and their ``FORMAT_VERSION``; equal records hold equal fields."""

    KIND: ClassVar[str] = ""
    FILE: ClassVar[str] = ""
    FORMAT_VERSION: ClassVar[int] = FORMAT_VERSION
    #: the keys of the file that no view or method may take
    _RESERVED: ClassVar[tuple[str, ...]] = ("format", "version")

    def field_values(self) -> dict[str, Any]:
        """The record's fields by name.

        Returns:
            ``{name: value}`` in the order the fields are declared.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The file's content (without ``format`` and ``version``, which :func:`save_record` adds).

        Returns:
            A dict of tensors and plain values.
        """
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = "") -> Record:
        """The record of a file's content in the current layout.

        Args:
            data: what the file holds.
            path: the file, for the errors.

        Returns:
            The record.

        Raises:
            InterpError: a field is missing or of the wrong kind (one line).
        """
        raise NotImplementedError

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """A file's content of an older ``version`` in the current layout.

        Args:
            data: what the file holds.
            version: its version (in :data:`READS`, below :data:`FORMAT_VERSION`).

        Returns:
            The same content in the layout of :data:`FORMAT_VERSION`.
        """
        return dict(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or other.KIND != self.KIND:
            return NotImplemented
        return _same(self.field_values(), other.field_values())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        def short(v: Any) -> str:
            if isinstance(v, torch.Tensor):
                return f"tensor{list(v.shape)}"
            if isinstance(v, dict):
                return "{" + ", ".join(f"{k!r}: {short(x)}" for k, x in v.items()) + "}"
            return repr(v)

        return f"{type(self).__name__}(" + ", ".join(f"{k}={short(v)}" for k, v in self.field_values().items()) + ")"


# --- reading helpers: one-line errors ---------------------------------------------------------------


def _bad(path: Path | str, kind: str, what: str) -> InterpError:
    return InterpError(f"{path} is not a valid {kind} result: {what}")


def _tensor(data: dict, name: str, path: Path | str, kind: str, rows: int | None = None) -> torch.Tensor:
    v = data.get(name)
    if not isinstance(v, torch.Tensor):
        raise _bad(path, kind, f"{name!r} is not a tensor")
    if rows is not None and (v.dim() == 0 or v.shape[0] != rows):
        raise _bad(path, kind, f"{name!r} has {list(v.shape)}, not one row per unit ({rows})")
    return v


def _optional(data: dict, name: str, path: Path | str, kind: str, rows: int | None = None) -> torch.Tensor | None:
    return None if data.get(name) is None else _tensor(data, name, path, kind, rows)


def _units(data: dict, path: Path | str, kind: str) -> list[int]:
    v = data.get("units")
    if isinstance(v, torch.Tensor) and not v.is_floating_point() and v.dim() <= 1:
        return [int(u) for u in v.reshape(-1).tolist()]
    if isinstance(v, torch.Tensor) and v.numel() == 0:  # torch.tensor([]) is float
        return []
    raise _bad(path, kind, "'units' is not a tensor of unit numbers")


def _names(data: dict, name: str, path: Path | str, kind: str) -> list[str]:
    v = data.get(name)
    if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
        raise _bad(path, kind, f"{name!r} is not a list of names")
    return list(v)


def _columns(data: dict, path: Path | str, kind: str, rows: int) -> dict[str, torch.Tensor]:
    v = data.get("columns", {})
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise _bad(path, kind, "'columns' is not a dict of per-unit numbers")
    for name in v:
        if _tensor(v, name, path, kind, rows).dim() != 1:
            raise _bad(path, kind, f"column {name!r} is not one number per unit")
    return dict(v)


def _units_tensor(units: list[int]) -> torch.Tensor:
    return torch.tensor([int(u) for u in units], dtype=torch.long)


def _v0_columns(data: dict, used: set[str], rows: int) -> dict[str, torch.Tensor]:
    """The other per-unit numbers of a version-0 file (a number tensor [U] under any other key), which the
    atlas showed as sort columns."""
    return {
        name: v
        for name, v in data.items()
        if name not in used
        and isinstance(v, torch.Tensor)
        and v.dim() == 1
        and v.shape[0] == rows
        and (v.is_floating_point() or v.dtype in (torch.int32, torch.int64))
    }
