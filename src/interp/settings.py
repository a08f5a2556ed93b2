"""Settings of an interpretation, as one frozen dataclass each: defaults, checks and documentation in one place.

Every interpretation has one settings class (``FeatVisSettings``, ``TopKSettings``, ``DreamSettings``, ...) that
derives from :class:`Settings`. The step takes an instance; the callback holds one (``callback.settings``) and is
built from it or from keywords that build it; the Hydra config of the callback sets the same names, and a test
compares the config's values with the class's defaults. Settings are frozen and hashable, so they are also the key
under which the run's :class:`~interp.store.ResultStore` files a result.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Example(Settings):
...     steps: int = 8
...     def check(self):
...         self.at_least("steps", 1)
>>> Example.build(None, steps=3)
Example(steps=3)
>>> Example.build(Example(steps=3), steps=4).steps
4
>>> Example.build(None, step=3)
Traceback (most recent call last):
    ...
interp.settings.SettingsError: Example: unknown setting 'step' (the settings: steps)
>>> Example(steps=0)
Traceback (most recent call last):
    ...
interp.settings.SettingsError: Example: steps must be a whole number >= 1, got 0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from interp.errors import InterpError

__all__ = ["Settings", "SettingsError", "frozen_value"]

S = TypeVar("S", bound="Settings")


class SettingsError(InterpError, TypeError, ValueError):
    """A setting that cannot work (an unknown name, ``steps=0``, an unknown view), refused when the settings are
    made; a ``TypeError`` and a ``ValueError`` for Python callers."""


def frozen_value(value: Any) -> Any:
    """``value`` made hashable: lists (and Hydra's ``ListConfig``) become tuples, mappings sorted tuples of pairs.

    Args:
        value: a setting's value.

    Returns:
        The same value, hashable when its parts are.

    >>> frozen_value([1, [2, 3]]), frozen_value({"b": 1, "a": [2]})
    ((1, (2, 3)), (('a', (2,)), ('b', 1)))
    """
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), frozen_value(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return tuple(frozen_value(v) for v in value)
    return value


class Settings:
    """Base of the settings dataclasses (each is ``@dataclass(frozen=True)``).

    A subclass declares its fields with defaults and overrides :meth:`check`, which refuses a value that
    cannot work with a :class:`SettingsError` of one line (the helpers :meth:`at_least`, :meth:`one_of`,
    :meth:`finite` write it). Lists given for a field are stored as tuples, so settings are hashable.
    """

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            frozen = frozen_value(value)
            if frozen is not value:
                object.__setattr__(self, f.name, frozen)
        self.check()

    def check(self) -> None:
        """Refuse values that cannot work; subclasses override it.

        Raises:
            SettingsError: a value out of range or of the wrong kind.
        """

    # --- building --------------------------------------------------------------------------------------------
    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The names of the settings, in order.

        Returns:
            The field names.
        """
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def build(cls: type[S], given: S | Mapping[str, Any] | None = None, owner: str | None = None, **changes: Any) -> S:
        """Settings from what a caller gives: an instance, a mapping of settings, or nothing, with ``changes``.

        Args:
            given: settings of this class, a mapping of their names to values, or None (the defaults).
            owner: names the caller in messages (default: the class name).
            changes: settings that replace those of ``given``.

        Returns:
            A new instance (``given`` itself when it is one and nothing changes).

        Raises:
            SettingsError: an unknown name, a value that cannot work, or ``given`` of another type.
        """
        who = owner or cls.__name__
        if given is None:
            values: dict[str, Any] = {}
        elif isinstance(given, cls):
            if not changes:
                return given
            values = {name: getattr(given, name) for name in cls.names()}
        elif isinstance(given, Mapping):
            values = {str(k): v for k, v in given.items()}
        else:
            raise SettingsError(f"{who}: settings must be {cls.__name__} or a mapping, got {type(given).__name__}")
        values.update(changes)
        unknown = [k for k in values if k not in cls.names()]
        if unknown:
            raise SettingsError(f"{who}: unknown setting {unknown[0]!r} (the settings: {', '.join(cls.names())})")
        try:
            return cls(**values)
        except SettingsError as e:
            if owner and not str(e).startswith(f"{owner}:"):
                raise SettingsError(f"{owner}: {str(e).partition(': ')[2] or e}") from None
            raise

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes`` (checked like a new instance).

        Args:
            changes: settings to replace.

        Returns:
            The new settings.
        """
        return type(self).build(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (field order).

        Returns:
            ``{name: value}``.
        """
        return {name: getattr(self, name) for name in self.names()}

    # --- checks ----------------------------------------------------------------------------------------------
    def fail(self, message: str) -> None:
        """Raise the one-line error of a setting.

        Args:
            message: what is wrong.

        Raises:
            SettingsError: always, as ``"<Class>: <message>"``.
        """
        raise SettingsError(f"{type(self).__name__}: {message}")

    def at_least(self, name: str, least: int, optional: bool = False) -> None:
        """Refuse a setting that is not a whole number ``>= least`` (or None when ``optional``).

        Args:
            name: the setting.
            least: its smallest value.
            optional: None is allowed too.
        """
        value = getattr(self, name)
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            self.fail(f"{name} must be a whole number >= {least}, got {value!r}")

    def finite(self, name: str, least: float | None = None, optional: bool = False) -> None:
        """Refuse a setting that is not a finite number (``>= least`` when given; None when ``optional``).

        Args:
            name: the setting.
            least: its smallest value, or None.
            optional: None is allowed too.
        """
        value = getattr(self, name)
        if optional and value is None:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (least is not None and value < least):
            bound = f" >= {least:g}" if least is not None else ""
            self.fail(f"{name} must be a finite number{bound}, got {value!r}")

    def one_of(self, name: str, choices: tuple[Any, ...] | list[Any]) -> None:
        """Refuse a setting outside ``choices``.

        Args:
            name: the setting.
            choices: the values allowed.
        """
        value = getattr(self, name)
        if value not in choices:
            self.fail(f"unknown {name} {value!r}: use {', '.join(map(str, choices))}")
