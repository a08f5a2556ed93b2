"""The result records, one per kind of result file: their fields, their file layout and their migrations."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch

from interp.records.base import (
    Record,
    _bad,
    _columns,
    _names,
    _optional,
    _tensor,
    _units,
    _units_tensor,
    _v0_columns,
)

__all__ = ["AttributionRecord", "ExpressionsRecord", "FeatVisRecord", "TemplatesRecord", "TopKRecord"]


@dataclass(eq=False, repr=False)
class FeatVisRecord(Record):
    """A layer's feature visualization (``featvis/<layer>/featvis.pt``).

    Attributes:
        units: the units, row ``i`` of every tensor for ``units[i]``.
        statistic: the like-for-like statistic of the activations (``spatial max``, ``spatial mean``), "" for a
            dense layer.
        images: per view, ``[U, C, H, W]`` the image of each unit, in [0, 1].
        activations: per view, ``[U]`` the activation each unit's image reaches (the statistic).
        ratios: per view (when the layer's top-k was known), ``[U]`` that activation over the unit's dataset maximum.
        columns: other per-unit numbers (``[U]`` each) the atlas offers as sort columns.
    """

    KIND: ClassVar[str] = "featvis"
    FILE: ClassVar[str] = "featvis.pt"
    _RESERVED: ClassVar[tuple[str, ...]] = ("format", "version", "units", "statistic", "views", "columns")

    units: list[int]
    statistic: str = ""
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    ratios: dict[str, torch.Tensor] = field(default_factory=dict)
    columns: dict[str, torch.Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The file's content: ``units``, ``statistic``, ``views``, then per view ``<view>`` (the images),
        ``activation_<view>`` and ``ratio_<view>``; ``columns``.

        Returns:
            A dict of tensors and plain values.

        Raises:
            ValueError: a view named like one of the other keys.
        """
        views = list(self.images)
        clash = set(views) & set(self._RESERVED)
        if clash:
            raise ValueError(f"a feature visualization view may not be named {sorted(clash)}")
        out: dict[str, Any] = {"units": _units_tensor(self.units), "statistic": self.statistic, "views": views}
        for view in views:
            out[view] = self.images[view]
            out[f"activation_{view}"] = self.activations[view]
            if view in self.ratios:
                out[f"ratio_{view}"] = self.ratios[view]
        out["columns"] = dict(self.columns)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = "") -> FeatVisRecord:
        """The record of a file's content, checked field by field (:meth:`Record.from_dict`)."""
        units = _units(data, path, cls.KIND)
        statistic = data.get("statistic", "")
        if not isinstance(statistic, str):
            raise _bad(path, cls.KIND, "'statistic' is not a name")
        n = len(units)
        views = _names(data, "views", path, cls.KIND)
        images = {v: _tensor(data, v, path, cls.KIND, n) for v in views}
        activations = {v: _tensor(data, f"activation_{v}", path, cls.KIND, n) for v in views}
        ratios = {v: _tensor(data, f"ratio_{v}", path, cls.KIND, n) for v in views if f"ratio_{v}" in data}
        return cls(units, statistic, images, activations, ratios, _columns(data, path, cls.KIND, n))

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Version 0 has no ``views`` (a view is a key with an ``activation_<view>`` beside it) and no ``columns``
        (other per-unit numbers stood beside the fields).

        Args:
            data: what the file holds.
            version: 0.

        Returns:
            The content in the current layout.
        """
        views = [k[len("activation_") :] for k in data if isinstance(k, str) and k.startswith("activation_")]
        views = [v for v in views if v in data]
        used = {"units", "statistic", *views, *(f"{p}_{v}" for v in views for p in ("activation", "ratio"))}
        units = data.get("units")
        rows = units.numel() if isinstance(units, torch.Tensor) else -1
        return {**data, "views": views, "columns": _v0_columns(data, used, rows)}


@dataclass(eq=False, repr=False)
class TemplatesRecord(Record):
    """The weights of a layer that reads the input directly, as pictures (``templates/<layer>/templates.pt``).

    Attributes:
        units: the units, row ``i`` of ``weights`` for ``units[i]``.
        weights: ``[U, C, H, W]`` each unit's weights (signed).
    """

    KIND: ClassVar[str] = "templates"
    FILE: ClassVar[str] = "templates.pt"

    units: list[int]
    weights: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        """The file's content: ``units`` and ``weights``.

        Returns:
            A dict of tensors.
        """
        return {"units": _units_tensor(self.units), "weights": self.weights}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = "") -> TemplatesRecord:
        """The record of a file's content, checked field by field (:meth:`Record.from_dict`)."""
        units = _units(data, path, cls.KIND)
        return cls(units, _tensor(data, "weights", path, cls.KIND, len(units)))


@dataclass(eq=False, repr=False)
class TopKRecord(Record):
    """A layer's top-k data set examples (``topk/<layer>/topk.pt``).

    Attributes:
        units: the units, row ``i`` of every tensor for ``units[i]``.
        values: ``[U, k]`` each unit's largest activations, best first (the first is the data set maximum).
        indices: ``[U, k]`` the data set indices of those examples (-1: none).
        positions: ``[U, k, 2]`` the ``(y, x)`` of each example's maximum (conv layers mined with the spatial max),
            or None.
        labels: ``[U, k]`` the examples' labels (-1 where missing), or None when the data has none.
        bottom_values: ``[U, k]`` each unit's most negative activations, or None.
        bottom_indices: ``[U, k]`` the data set indices of those, or None.
        hist: ``[U, bins]`` each unit's activation over the whole data set as a histogram, or None.
        hist_edges: ``[U, bins + 1]`` the edges of those bins, or None.
        columns: other per-unit numbers (``[U]`` each) the atlas offers as sort columns.
    """

    KIND: ClassVar[str] = "topk"
    FILE: ClassVar[str] = "topk.pt"

    units: list[int]
    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    bottom_values: torch.Tensor | None = None
    bottom_indices: torch.Tensor | None = None
    hist: torch.Tensor | None = None
    hist_edges: torch.Tensor | None = None
    columns: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def dataset_max(self) -> torch.Tensor:
        """``[U]`` each unit's largest activation on the data set (``values[:, 0]``; written as ``dataset_max``)."""
        return self.values[:, 0]

    def to_dict(self) -> dict[str, Any]:
        """The file's content: the fields that are not None, and ``dataset_max``.

        Returns:
            A dict of tensors.
        """
        out: dict[str, Any] = {"units": _units_tensor(self.units), "values": self.values, "indices": self.indices}
        if self.values.shape[1] > 0:
            out["dataset_max"] = self.dataset_max
        for name in ("positions", "labels", "bottom_values", "bottom_indices", "hist", "hist_edges"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["columns"] = dict(self.columns)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = "") -> TopKRecord:
        """The record of a file's content, checked field by field (:meth:`Record.from_dict`)."""
        units = _units(data, path, cls.KIND)
        n, kind = len(units), cls.KIND
        values = _tensor(data, "values", path, kind, n)
        if values.dim() != 2:
            raise _bad(path, kind, f"'values' has {list(values.shape)}, not [units, k]")
        optional = {
            name: _optional(data, name, path, kind, n)
            for name in ("positions", "labels", "bottom_values", "bottom_indices", "hist", "hist_edges")
        }
        hist, edges = optional["hist"], optional["hist_edges"]
        if (hist is None) != (edges is None) or (
            hist is not None and edges is not None and (hist.dim() != 2 or edges.shape != (n, hist.shape[1] + 1))
        ):
            raise _bad(path, kind, "'hist' and 'hist_edges' are not [units, bins] and [units, bins + 1]")
        positions = optional["positions"]
        if positions is not None and (positions.dim() != 3 or positions.shape[2] != 2):
            raise _bad(path, kind, f"'positions' has {list(positions.shape)}, not [units, k, 2]")
        return cls(
            units,
            values,
            _tensor(data, "indices", path, kind, n),
            positions=positions,
            labels=optional["labels"],
            bottom_values=optional["bottom_values"],
            bottom_indices=optional["bottom_indices"],
            hist=hist,
            hist_edges=edges,
            columns=_columns(data, path, kind, n),
        )

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Version 0 has no ``columns`` (other per-unit numbers stood beside the fields).

        Args:
            data: what the file holds.
            version: 0.

        Returns:
            The content in the current layout.
        """
        used = {"units", "dataset_max", *(f.name for f in fields(cls))}
        units = data.get("units")
        rows = units.numel() if isinstance(units, torch.Tensor) else -1
        return {**data, "columns": _v0_columns(data, used, rows)}


@dataclass(eq=False, repr=False)
class AttributionRecord(Record):
    """A layer's attribution maps of each unit's top examples (``attribution/<layer>/attribution.pt``).

    Attributes:
        units: the units, row ``i`` of every tensor for ``units[i]``.
        examples: ``[U, k, C, H, W]`` each unit's top examples.
        maps: per method, ``[U, k, H, W]`` the attribution map of each example (summed over channels).
        score_methods: the methods that were scored (rows of ``scores``), or None when none was.
        scores: per metric, ``[methods, U]`` float64 each method's explanation score of each unit (NaN: not
            scored), or None.
    """

    KIND: ClassVar[str] = "attribution"
    FILE: ClassVar[str] = "attribution.pt"
    _RESERVED: ClassVar[tuple[str, ...]] = ("format", "version", "units", "examples", "methods", "score_methods")

    units: list[int]
    examples: torch.Tensor
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    score_methods: list[str] | None = None
    scores: dict[str, torch.Tensor] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The file's content: ``units``, ``examples``, ``methods``, one key per method (its maps), and
        ``score_methods`` and ``scores`` when some were scored.

        Returns:
            A dict of tensors and plain values.

        Raises:
            ValueError: a method named like one of the other keys.
        """
        clash = set(self.maps) & {*self._RESERVED, "scores"}
        if clash:
            raise ValueError(f"an attribution method may not be named {sorted(clash)}")
        out: dict[str, Any] = {"units": _units_tensor(self.units), "examples": self.examples}
        out["methods"] = list(self.maps)
        out.update(self.maps)
        if self.score_methods is not None and self.scores is not None:
            out["score_methods"] = list(self.score_methods)
            out["scores"] = dict(self.scores)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = "") -> AttributionRecord:
        """The record of a file's content, checked field by field (:meth:`Record.from_dict`)."""
        units = _units(data, path, cls.KIND)
        n, kind = len(units), cls.KIND
        maps = {m: _tensor(data, m, path, kind, n) for m in _names(data, "methods", path, kind)}
        score_methods, scores = None, None
        if data.get("score_methods") is not None or data.get("scores") is not None:
            score_methods = _names(data, "score_methods", path, kind)
            table = data.get("scores")
            if not isinstance(table, dict):
                raise _bad(path, kind, "'scores' is not a dict of score tables")
            want = (len(score_methods), n)
            scores = {}
            for metric in table:
                t = _tensor(table, metric, path, kind)
                if tuple(t.shape) != want:
                    raise _bad(path, kind, f"scores {metric!r} has {list(t.shape)}, not [methods, units] {list(want)}")
                scores[str(metric)] = t
        return cls(units, _tensor(data, "examples", path, kind, n), maps, score_methods, scores)

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Version 0 has no ``methods``: every other tensor is a method's maps.

        Args:
            data: what the file holds.
            version: 0.

        Returns:
            The content in the current layout.
        """
        skip = {*cls._RESERVED, "scores"}
        methods = [k for k, v in data.items() if isinstance(k, str) and k not in skip and isinstance(v, torch.Tensor)]
        return {**data, "methods": methods}


@dataclass(eq=False, repr=False)
class ExpressionsRecord(Record):
    """Each class of an expression classifier rendered from noise and accentuated from a face
    (``expressions/<layer>/expressions.pt``); row ``c`` of every tensor is class ``c``.

    Attributes:
        face: ``[1, C, H, W]`` the face.
        face_probs: ``[classes]`` the probabilities the network gives the face.
        rendered: ``[classes, C, H, W]`` each class rendered from noise.
        rendered_probs: ``[classes, classes]`` the probabilities of each rendering.
        accentuated: ``[classes, C, H, W]`` each class accentuated from the face.
        accentuated_probs: ``[classes, classes]`` the probabilities of each accentuated face.
    """

    KIND: ClassVar[str] = "expressions"
    FILE: ClassVar[str] = "expressions.pt"

    face: torch.Tensor
    face_probs: torch.Tensor
    rendered: torch.Tensor
    rendered_probs: torch.Tensor
    accentuated: torch.Tensor
    accentuated_probs: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        """The file's content: one key per field.

        Returns:
            A dict of tensors.
        """
        return self.field_values()

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = "") -> ExpressionsRecord:
        """The record of a file's content, checked field by field (:meth:`Record.from_dict`)."""
        return cls(**{f.name: _tensor(data, f.name, path, cls.KIND) for f in fields(cls)})
