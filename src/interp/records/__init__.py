"""Interpretation results as typed, versioned records, with the one writer and the one reader of their files.

Each step saves its result as ``<run>/interp/<kind>/<layer>/<kind>.pt``: a record (:class:`FeatVisRecord`,
:class:`TemplatesRecord`, :class:`TopKRecord`, :class:`AttributionRecord`, :class:`ExpressionsRecord`) written by
:func:`save_record` and read back by :func:`read_record`. A file is a plain dict of tensors and plain values
(loadable with ``torch.load(weights_only=True)``): ``format`` (the record's ``KIND``) and ``version``
(:data:`FORMAT_VERSION`), then the fields in the layout the steps wrote before records existed (one key per
feature visualization view and attribution method, ``activation_<view>``, ...), with the list of views or
methods spelled out, so that nothing is guessed from a tensor's rank.

A file without ``version`` was written before versions: it is version 0 (that same layout, without the lists) and
:func:`read_record` migrates it. A file of another version, or of another format, is refused with an
:class:`~interp.errors.InterpError` of one line naming the file, the version seen and the versions this code reads.

>>> import tempfile
>>> from pathlib import Path
>>> from interp.report import Reporter
>>> run = Path(tempfile.mkdtemp())
>>> path = save_record(Reporter(run), "fc", TemplatesRecord([0, 3], torch.zeros(2, 1, 5, 5)))
>>> path.relative_to(run).as_posix(), read_record(path).units
('interp/templates/fc/templates.pt', [0, 3])
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Protocol

import torch

from interp.errors import InterpError
from interp.records.base import FORMAT_VERSION, READS, Record, _stored
from interp.records.kinds import AttributionRecord, ExpressionsRecord, FeatVisRecord, TemplatesRecord, TopKRecord

__all__ = [
    "FORMAT_VERSION",
    "READS",
    "RECORDS",
    "AttributionRecord",
    "ExpressionsRecord",
    "FeatVisRecord",
    "Record",
    "TemplatesRecord",
    "TopKRecord",
    "read_record",
    "save_record",
]

log = logging.getLogger(__name__)


class _Saver(Protocol):
    enabled: bool

    def save(self, name: str, tensors: dict[str, Any]) -> Path | None: ...


#: the record of each kind
RECORDS: dict[str, type[Record]] = {
    r.KIND: r for r in (FeatVisRecord, TemplatesRecord, TopKRecord, AttributionRecord, ExpressionsRecord)
}
_BY_FILE = {r.FILE: r for r in RECORDS.values()}


# --- the writer and the reader ----------------------------------------------------------------------


def save_record(reporter: _Saver, layer: str, record: Record) -> Path | None:
    """Write ``record`` as ``<run>/interp/<KIND>/<layer>/<FILE>`` through ``reporter`` (only where it is
    enabled: rank zero), with ``format`` and ``version``; tensors are written detached, on the CPU.

    Args:
        reporter: an :class:`~interp.report.Reporter`.
        layer: the layer name (any name: :func:`~interp.atlas.load.result_name` makes it one folder).
        record: the record.

    Returns:
        The file written, or None where the reporter writes nothing.
    """
    if not getattr(reporter, "enabled", True):
        return None
    content = {"format": record.KIND, "version": record.FORMAT_VERSION, **_stored(record.to_dict())}
    return reporter.save(f"{record.KIND}/{layer}/{record.FILE}", content)


def _load(path: Path) -> Any:
    """A file read safely (tensors and plain values only); errors are one line."""
    from interp.runs import _short_reason

    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before refusing a foreign pickle: the error says it.
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, weights_only=True, map_location="cpu")
    except OSError as e:  # unreadable (permissions), a folder
        raise InterpError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    except Exception as e:  # a truncated, corrupt or foreign file (a pickle of Python objects)
        raise InterpError(f"cannot read {path}: {_short_reason(e)}") from None


def _plain(value: Any) -> str:
    """A value seen in a file, short and on one line."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def read_record(path: str | Path, kind: str | None = None) -> Record:
    """The record a result file holds, migrated from an older version when it is one.

    Args:
        path: the file.
        kind: the kind expected (:data:`RECORDS`); None: the kind whose file name ``path`` has.

    Returns:
        The record.

    Raises:
        InterpError: one line naming the file: unreadable, corrupt, holding Python objects, not a result, a
            result of another format, of a version this code does not read (naming the version seen and those
            it reads), or with a missing or malformed field.
    """
    path = Path(path)
    cls = RECORDS.get(kind) if kind is not None else _BY_FILE.get(path.name)
    if cls is None:
        raise InterpError(f"{path}: unknown kind of result {kind or path.name!r} (known: {', '.join(RECORDS)})")
    data = _load(path)
    if not isinstance(data, dict) or ("units" not in data and "version" not in data and cls is not ExpressionsRecord):
        raise InterpError(f"{path} is not an interpretation result (a dict with 'units')")
    version = data.get("version", 0)
    reads = f"this interp reads {cls.KIND} results of versions {', '.join(map(str, READS))}"
    if "format" in data and data["format"] != cls.KIND:
        raise InterpError(
            f"{path} holds a result of format {_plain(data['format'])} version {_plain(version)}, "
            f"not {cls.KIND!r}: {reads}"
        )
    if not isinstance(version, int) or isinstance(version, bool) or version not in READS:
        raise InterpError(
            f"{path} is a {cls.KIND} result of version {_plain(version)}: {reads} "
            "(write it again with this interp, or read it with the interp that wrote it)"
        )
    content = {k: v for k, v in data.items() if k not in ("format", "version")}
    if version < cls.FORMAT_VERSION:
        content = cls.migrate(content, version)
        log.info("%s: a %s result of version %d, migrated to version %d", path, cls.KIND, version, cls.FORMAT_VERSION)
    return cls.from_dict(content, path)
