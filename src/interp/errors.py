"""Errors that users are expected to meet, printed by the CLI as one line without a traceback.

Every class derives from :class:`InterpError` (what the CLI catches) and, where one fits, from
the built-in exception a Python caller would expect (``FileNotFoundError``, ``ValueError``), so
``except ValueError`` keeps working for library users.
"""


class InterpError(Exception):
    """Base class of the expected, user-facing errors (missing data, missing weights, bad config)."""


class DataNotFoundError(InterpError, FileNotFoundError):
    """A data set, an image, a folder or another input file is not where it was said to be."""


class DataError(InterpError, ValueError):
    """Data that exists but cannot be used: unreadable, corrupt, truncated, in the wrong format,
    or a folder without usable files."""


class ImageReadError(DataError):
    """An image file that cannot be read (not an image, unreadable, too large, unsupported mode)."""


class ImageRangeError(InterpError, ValueError):
    """Image values outside [0, 1], the one range images have in this project."""


class CheckpointError(InterpError, ValueError):
    """A file that is not a checkpoint of this project (corrupt, truncated, empty, or another kind)."""


class UnsafeConfigError(InterpError, ValueError):
    """A run's ``config.yaml`` names a ``_target_`` outside the allow-list of this project's classes."""
