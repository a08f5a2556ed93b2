"""The results of one run's interpretation steps, kept for reuse: an explicit store, not a search
through the other callbacks.

A result is filed under ``(model, step, layer, kind, settings)``:

* ``model`` and ``step``: which weights computed it (the object and the trainer's global step, so a
  result of an earlier epoch is never taken for a later one);
* ``layer`` and ``kind`` (``"topk"``, ``"featvis"``, ...);
* ``settings``: a hashable value holding every setting that decides the result (for top-k: the data
  set and the reduction over positions; for feature visualization: the settings of the images).

The results filed are the records of :mod:`interp.records`, the same objects the result files hold:
under ``"topk"`` an :class:`~interp.steps.topk.Examples` (a :class:`~interp.records.TopKRecord` that
also keeps the mined top-k and the data set it indexes), under ``"featvis"`` a
:class:`~interp.steps.featvis.Views` (a :class:`~interp.records.FeatVisRecord` that also keeps each
view's optimization). A step writes what it files with :func:`interp.records.save_record`; the atlas
reads the files back as records with :func:`interp.records.read_record`. (The callbacks also file the
data set they share, under ``"dataset"``: an input, not a result.)

Under a Lightning ``Trainer`` the callbacks share the store of the trainer (:func:`store_of`);
``python -m interp visualize`` makes one per run. Reusing code asks the store, and when a result is
missing or lacks units, computes what is missing and files the union, so that which callback ran
first never changes what the others compute.

>>> store = ResultStore()
>>> store.put(model := object(), 0, "dense_1", "topk", ("max", 1), "examples")
>>> store.get(model, 0, "dense_1", "topk", ("max", 1)), store.get(model, 1, "dense_1", "topk", ("max", 1))
('examples', None)
>>> store.put(model, 1, "dense_1", "topk", ("max", 1), "later"); len(store)  # the step-0 result is stale
1
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["ResultStore", "store_of"]


class ResultStore:
    """Results of interpretation steps keyed by model, training step, layer, kind and settings."""

    def __init__(self) -> None:
        self._items: dict[tuple[int, int, str, str, Hashable], Any] = {}
        self._models: dict[int, Any] = {}  # keeps each model alive while its results are filed under its id

    def _key(self, model: Any, step: int, layer: str, kind: str, settings: Hashable) -> tuple:
        return (id(model), int(step), str(layer), str(kind), settings)

    def get(self, model: Any, step: int, layer: str, kind: str, settings: Hashable = ()) -> Any | None:
        """The result filed under these keys, or None.

        Args:
            model: the model that computed it.
            step: the trainer's global step when it was computed (0 without a trainer).
            layer: the layer name.
            kind: what kind of result (``"topk"``, ``"featvis"``, ...).
            settings: the settings that decide the result (hashable).

        Returns:
            The result, or None when nothing is filed under these keys.
        """
        return self._items.get(self._key(model, step, layer, kind, settings))

    def put(self, model: Any, step: int, layer: str, kind: str, settings: Hashable, result: Any) -> None:
        """File ``result`` under these keys (replacing what was there, and forgetting this model's results
        of other steps).

        Args:
            model, step, layer, kind, settings: as in :meth:`get`.
            result: the result to keep.
        """
        key = self._key(model, step, layer, kind, settings)
        # results of an earlier step of this model are stale (every_n_epochs): drop them, keep memory flat
        for old in [k for k in self._items if k[0] == key[0] and k[1] != key[1]]:
            del self._items[old]
        self._models[id(model)] = model
        self._items[key] = result

    def __len__(self) -> int:
        return len(self._items)


def store_of(trainer: Any) -> ResultStore:
    """The store the callbacks of ``trainer`` share (made on first use and kept on the trainer).

    Args:
        trainer: a Lightning ``Trainer`` (any object that takes attributes).

    Returns:
        The trainer's :class:`ResultStore`.
    """
    store = getattr(trainer, "_interp_results", None)
    if not isinstance(store, ResultStore):
        store = ResultStore()
        trainer._interp_results = store
    return store
