"""A strict reader of TensorFlow.js weight manifests (``*-weights_manifest.json`` + binary shards).

The format (TensorFlow.js "weights manifest", as written by ``tensorflowjs_converter`` and read by
``tf.io.loadWeights``): the JSON file holds a list of *groups*; each group names its binary
shards in ``paths`` (file names relative to the manifest) and lists its tensors in ``weights``,
each with a ``name``, a ``shape`` and a ``dtype``. The shards of a group, concatenated in the
order of ``paths``, hold the group's tensors back to back, little-endian, in the order of
``weights``. A tensor may carry a ``quantization`` entry:

* ``{"dtype": "uint8" | "uint16", "scale": s, "min": m}``: each value is stored as an unsigned
  integer ``q`` (1 or 2 bytes) and means ``q * s + m`` (computed in double precision, then
  rounded to the tensor's dtype, as TensorFlow.js does);
* ``{"dtype": "float16"}``: each float32 value is stored as an IEEE half-precision float.

Unquantized ``float32`` and ``int32`` tensors take 4 bytes a value. Other dtypes (``string``,
``bool``, ``complex64``) are refused.

Strictness: :func:`read_manifest` refuses a manifest whose shards hold fewer or more bytes than
its tensors need (truncated file, trailing bytes), duplicate names, malformed entries and, when
checksums are given, any file whose SHA-256 differs. :class:`TfjsWeights` then hands tensors to a
module by name with the shape the module expects (:meth:`TfjsWeights.take`), and
:meth:`TfjsWeights.finish` refuses tensors nobody took. Every problem is one
:class:`WeightsFormatError` whose one-line message names the file or tensor at fault.

Only JSON and raw bytes are read (``json`` and ``numpy.frombuffer``): nothing in the files can
run code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from interp.errors import InterpError

# bytes per stored value
_STORED_SIZE = {"float32": 4, "int32": 4, "uint8": 1, "uint16": 2, "float16": 2}
_NUMPY_STORED = {"float32": "<f4", "int32": "<i4", "uint8": "<u1", "uint16": "<u2", "float16": "<f2"}
_TENSOR_DTYPES = ("float32", "int32")
_QUANTIZATIONS = ("uint8", "uint16", "float16")


class WeightsFormatError(InterpError, ValueError):
    """A TensorFlow.js weights manifest or shard that is malformed, truncated, padded, tampered
    with (checksum), or that does not fit the module loading it."""


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as lowercase hex.

    Args:
        path: the file.

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, checksums: Mapping[str, str]) -> None:
    """Check a file's SHA-256 against ``checksums[file name]``.

    Args:
        path: the file.
        checksums: expected lowercase hex digests keyed by file name (no folder).

    Raises:
        WeightsFormatError: the file has no entry in ``checksums`` or its digest differs.
    """
    name = Path(path).name
    expected = checksums.get(name)
    if expected is None:
        raise WeightsFormatError(f"{name}: no known SHA-256 checksum for this file (refusing to load it unverified)")
    actual = sha256_file(path)
    if actual != expected.lower():
        raise WeightsFormatError(
            f"{name}: SHA-256 checksum mismatch (expected {expected.lower()}, got {actual}); "
            "the file is corrupt or not the published one"
        )


@dataclass(frozen=True)
class TensorSpec:
    """One tensor entry of a manifest, located in its group's concatenated shards.

    Args:
        name: the tensor's name (e.g. ``conv32_1/conv1/conv/filters``).
        shape: its shape, in TensorFlow's layout (HWIO for convolution filters).
        dtype: ``float32`` or ``int32``.
        quantization: ``None``, or the manifest's quantization entry (``dtype``, ``scale``, ``min``).
        group: index of its group in the manifest.
        offset: byte offset in the group's concatenated shards.
        nbytes: stored bytes.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: Mapping[str, Any] | None
    group: int
    offset: int
    nbytes: int


def _fail(manifest: Path, message: str) -> WeightsFormatError:
    return WeightsFormatError(f"{manifest.name}: {message}")


def _parse_spec(manifest: Path, entry: Any, group: int, offset: int) -> TensorSpec:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise _fail(manifest, f"group {group}: a weights entry without a string 'name': {str(entry)[:80]}")
    name = entry["name"]
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _fail(manifest, f"tensor {name!r}: 'shape' must be a list of non-negative integers, got {shape!r}")
    dtype = entry.get("dtype")
    if dtype not in _TENSOR_DTYPES:
        raise _fail(manifest, f"tensor {name!r}: unsupported dtype {dtype!r} (supported: float32, int32)")
    quantization = entry.get("quantization")
    stored = dtype
    if quantization is not None:
        if not isinstance(quantization, dict) or quantization.get("dtype") not in _QUANTIZATIONS:
            raise _fail(
                manifest, f"tensor {name!r}: unknown quantization {quantization!r} (supported: uint8, uint16, float16)"
            )
        stored = quantization["dtype"]
        if stored in ("uint8", "uint16"):
            for key in ("scale", "min"):
                value = quantization.get(key)
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    raise _fail(manifest, f"tensor {name!r}: {stored} quantization needs a finite number '{key}'")
        elif dtype != "float32":
            raise _fail(manifest, f"tensor {name!r}: float16 quantization applies to float32 tensors only")
    nbytes = math.prod(shape) * _STORED_SIZE[stored]
    return TensorSpec(name, tuple(shape), dtype, quantization, group, offset, nbytes)


def _resolve_shard(manifest: Path, rel: Any) -> Path:
    if not isinstance(rel, str) or not rel:
        raise _fail(manifest, f"'paths' must hold file names, got {rel!r}")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        raise _fail(manifest, f"shard path {rel!r} must be relative to the manifest's folder, without '..'")
    return manifest.parent.joinpath(*pure.parts)


def _decode(spec: TensorSpec, raw: bytes) -> np.ndarray:
    q = spec.quantization
    stored = spec.dtype if q is None else q["dtype"]
    values = np.frombuffer(raw, dtype=_NUMPY_STORED[stored])
    if stored in ("uint8", "uint16"):
        assert q is not None
        # as tf.io.decodeWeights: q * scale + min in double precision, then the tensor's dtype
        real = values.astype(np.float64) * float(q["scale"]) + float(q["min"])
        out = np.round(real).astype(np.int32) if spec.dtype == "int32" else real.astype(np.float32)
    elif stored == "float16":
        out = values.astype(np.float32)
    else:
        out = values.astype(np.dtype(spec.dtype), copy=True)
    return out.reshape(spec.shape)


def read_manifest(
    path: str | os.PathLike, checksums: Mapping[str, str] | None = None
) -> tuple[list[TensorSpec], dict[str, np.ndarray]]:
    """Read a TensorFlow.js weights manifest and its shards, strictly.

    Args:
        path: the ``*-weights_manifest.json`` file; the shards are looked up next to it.
        checksums: optional ``{file name: SHA-256 hex}``; when given, the manifest and every shard
            must be listed and match.

    Returns:
        The tensor specs in manifest order and ``{name: array}`` (TensorFlow layout, float32 or
        int32 numpy arrays).

    Raises:
        WeightsFormatError: a missing, malformed, truncated or padded file, a duplicate name, or a
            checksum mismatch; one line naming the file or tensor.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise WeightsFormatError(f"{manifest}: weights manifest not found")
    if checksums is not None:
        verify_checksum(manifest, checksums)
    try:
        groups = json.loads(manifest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(manifest, f"not a JSON weights manifest ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(groups, list) or not groups:
        raise _fail(manifest, "a weights manifest is a non-empty JSON list of groups")

    specs: list[TensorSpec] = []
    arrays: dict[str, np.ndarray] = {}
    for index, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or not group["paths"]:
            raise _fail(manifest, f"group {index} has no list of shard 'paths'")
        if not isinstance(group.get("weights"), list):
            raise _fail(manifest, f"group {index} has no list of 'weights'")
        group_specs: list[TensorSpec] = []
        offset = 0
        for entry in group["weights"]:
            spec = _parse_spec(manifest, entry, index, offset)
            if spec.name in arrays or any(s.name == spec.name for s in group_specs):
                raise _fail(manifest, f"tensor {spec.name!r} is listed twice")
            group_specs.append(spec)
            offset += spec.nbytes
        needed = offset

        shards = [_resolve_shard(manifest, rel) for rel in group["paths"]]
        chunks: list[bytes] = []
        starts: list[tuple[int, str]] = []
        total = 0
        for shard in shards:
            if not shard.is_file():
                raise _fail(manifest, f"shard {shard.name} not found next to the manifest")
            if checksums is not None:
                verify_checksum(shard, checksums)
            data = shard.read_bytes()
            starts.append((total, shard.name))
            chunks.append(data)
            total += len(data)
        blob = b"".join(chunks)

        def shard_at(byte: int, starts: Sequence[tuple[int, str]] = starts) -> str:
            return [name for start, name in starts if start <= byte][-1]

        if total < needed:
            short = next(s for s in group_specs if s.offset + s.nbytes > total)
            raise _fail(
                manifest,
                f"shard {shard_at(max(total - 1, 0))} is truncated: tensor {short.name!r} needs bytes "
                f"{short.offset}..{short.offset + short.nbytes} of group {index}, the shards hold {total} "
                f"(group needs {needed})",
            )
        if total > needed:
            raise _fail(
                manifest,
                f"shard {shard_at(total - 1)} has {total - needed} trailing bytes that no tensor uses "
                f"(group {index} needs {needed} bytes, its shards hold {total})",
            )
        for spec in group_specs:
            arrays[spec.name] = _decode(spec, blob[spec.offset : spec.offset + spec.nbytes])
        specs.extend(group_specs)
    return specs, arrays


@dataclass
class TfjsWeights:
    """The tensors of a manifest, handed out once each with a shape check.

    Build it with :meth:`open`; a module's loader calls :meth:`take` for every tensor it needs
    and :meth:`finish` at the end, which refuses tensors left unused.

    Args:
        source: the manifest's name, for error messages.
        arrays: ``{name: array}`` as read by :func:`read_manifest`.
    """

    source: str
    arrays: dict[str, np.ndarray]
    taken: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, path: str | os.PathLike, checksums: Mapping[str, str] | None = None) -> TfjsWeights:
        """Read a manifest (see :func:`read_manifest`).

        Args:
            path: the ``*-weights_manifest.json`` file.
            checksums: optional ``{file name: SHA-256 hex}`` that the manifest and shards must match.

        Returns:
            The weights, none taken yet.
        """
        _, arrays = read_manifest(path, checksums)
        return cls(Path(path).name, arrays)

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def take(self, name: str, shape: Sequence[int]) -> np.ndarray:
        """The tensor ``name``, which must have ``shape`` (TensorFlow layout); marks it used.

        Args:
            name: the tensor's name in the manifest.
            shape: the shape the loading module expects.

        Returns:
            The array (float32 or int32).

        Raises:
            WeightsFormatError: no such tensor, it was already taken, or its shape differs.
        """
        if name not in self.arrays:
            raise WeightsFormatError(f"{self.source}: tensor {name!r} is missing from the manifest")
        if name in self.taken:
            raise WeightsFormatError(f"{self.source}: tensor {name!r} was loaded twice")
        array = self.arrays[name]
        if tuple(array.shape) != tuple(shape):
            raise WeightsFormatError(
                f"{self.source}: tensor {name!r} has shape {list(array.shape)}, the module expects {list(shape)}"
            )
        self.taken.add(name)
        return array

    def finish(self) -> None:
        """Check that every tensor of the manifest was taken.

        Raises:
            WeightsFormatError: naming the tensors nobody used.
        """
        unused = [name for name in self.arrays if name not in self.taken]
        if unused:
            shown = ", ".join(repr(n) for n in unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
            raise WeightsFormatError(f"{self.source}: {len(unused)} tensor(s) not used by the module: {shown}")
