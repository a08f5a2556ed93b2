"""Errors that users are expected to meet, printed by the CLI as one line without a traceback."""


class InterpError(Exception):
    """Base class of the expected, user-facing errors (missing data, missing weights, bad config)."""


class DataNotFoundError(InterpError, FileNotFoundError):
    """A data set is neither on disk nor downloadable."""
