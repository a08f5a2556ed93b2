"""interp.config at the command line's boundary: ``units`` as the configs spell it (ranges, lists, ``all``)
and what it refuses. (The cases of ``parse_units``'s docstring run as its doctest.)"""

import pytest

from interp.config import parse_units
from interp.errors import InterpError


def test_parse_units_at_the_config_boundary():
    assert parse_units("3,7,32") == [3, 7, 32] and parse_units([1, 2]) == [1, 2]
    for bad, message in (("zero", "cannot read"), ("-1", ">= 0"), ("5:5", "names no unit")):
        with pytest.raises(InterpError, match=message):
            parse_units(bad)
