"""The one progress-bar helper of ``interp.optvis``: a tqdm bar when asked for, else nothing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class _NoBar:
    """Stands in for a tqdm bar when progress is off."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def progress_bar(total: int, enabled: bool, desc: str) -> Iterator[Any]:
    """A bar of ``total`` steps (``bar.update(n)``), closed on exit; a no-op bar when not ``enabled``.

    Args:
        total: number of steps.
        enabled: show a tqdm bar.
        desc: the bar's label.

    Yields:
        The bar (tqdm's, or one whose ``update`` and ``close`` do nothing).

    >>> with progress_bar(3, enabled=False, desc="render") as bar:
    ...     bar.update(3)
    """
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def progress(
    iterable: Iterable[T], enabled: bool, desc: str, total: int | None = None, leave: bool = False
) -> Iterable[T]:
    """``iterable`` wrapped in a tqdm bar when ``enabled``, else unchanged.

    Args:
        iterable: what to iterate over.
        enabled: show a tqdm bar.
        desc: the bar's label.
        total: number of items, for an iterable without a length.
        leave: keep the finished bar on screen.

    Returns:
        The wrapped (or the same) iterable.

    >>> list(progress(range(3), enabled=False, desc="steps"))
    [0, 1, 2]
    """
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=leave, total=total)
