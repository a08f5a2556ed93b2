"""What the callbacks check when they are built: ``units`` given as config syntax (``"0-7"``) in Python is
refused with the Python spelling, and top-k ``k`` must be a whole number >= 1 (at construction and on the command
line); a ``k`` larger than the data is clipped with one warning and pictures of at most 64 examples."""

from __future__ import annotations

import os
import re
import warnings

import pytest
from PIL import Image

from helpers import one_line_error, random_digits, run_cli, small_mlp


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")


def _callbacks():
    from interp.callbacks import AttributionCheck, FeatureVisualization, TopKExamples, UnitPanel

    return [FeatureVisualization, TopKExamples, UnitPanel, AttributionCheck]


@pytest.mark.parametrize(
    ("units", "spelled"),
    [("0-7", "range(0, 8)"), ("0:64", "range(0, 64)"), ("3,7,32", "[3, 7, 32]"), ("5", "units=5"), ("all", "None")],
)
def test_units_string_is_refused_at_construction_with_the_python_spelling(units, spelled):
    from interp.callbacks.base import CallbackArgumentError
    from interp.errors import InterpError

    for cls in _callbacks():
        with pytest.raises(CallbackArgumentError) as exc:
            cls("dense_1", units=units)
        error = exc.value
        assert isinstance(error, InterpError) and isinstance(error, ValueError) and isinstance(error, TypeError)
        message = str(error)
        assert "\n" not in message and cls.__name__ in message, message
        assert f"units={units!r} is config syntax; in Python pass units=" in message, message
        assert spelled in message, message


def test_units_strings_that_are_not_config_syntax_and_later_assignments():
    from interp.callbacks import FeatureVisualization, TopKExamples
    from interp.callbacks.base import CallbackArgumentError

    with pytest.raises(CallbackArgumentError, match="is a string; in Python pass a unit number"):
        TopKExamples("dense_1", units="first eight")
    cb = FeatureVisualization("dense_1", units=range(0, 8))
    assert cb.units == range(0, 8)
    with pytest.raises(CallbackArgumentError, match=r"in Python pass units=range\(2, 4\)"):
        cb.units = "2-3"
    assert cb.units == range(0, 8)
    assert TopKExamples("dense_1").units is None and TopKExamples("dense_1", units=3).units == 3


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "16"])
def test_topk_k_below_one_or_not_whole_is_one_line_at_construction(k):
    from interp.callbacks import TopKExamples
    from interp.errors import InterpError
    from interp.settings import SettingsError

    with pytest.raises(
        SettingsError, match=rf"^TopKExamples: k must be a whole number >= 1, got {re.escape(repr(k))}$"
    ) as exc:
        TopKExamples("dense_1", k=k)
    assert isinstance(exc.value, InterpError) and isinstance(exc.value, ValueError)
    assert "\n" not in str(exc.value)


def test_topk_k_larger_than_the_data_is_clipped_with_one_warning_and_small_pictures(tmp_path):
    from interp.callbacks import TopKExamples
    from interp.records import read_record
    from interp.report import Reporter
    from interp.steps.topk import PICTURE_LIMIT

    data = random_digits(100)
    cb = TopKExamples("dense_1", units=[0, 1], k=100_000, bottom=True, progress=False, on_error="raise")
    cb.check(small_mlp(), data)  # the data size is no reason to refuse: a folder of 3 photos with k=16 is fine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cb.apply(small_mlp(), data, Reporter(tmp_path / "run"))
    about_k = [w for w in caught if "k=100000" in str(w.message)]
    assert len(about_k) == 1, [str(w.message) for w in caught]
    assert "100 examples" in str(about_k[0].message) and "\n" not in str(about_k[0].message)
    assert result.top.values.shape == (2, 100) and result.bottom.values.shape == (2, 100)
    saved = read_record(tmp_path / "run" / "interp" / "topk" / "dense_1" / "topk.pt")
    assert saved.indices.shape == (2, 100)  # the result keeps every example
    pngs = sorted((tmp_path / "run" / "interp" / "topk" / "dense_1").rglob("unit_*.png"))
    assert len(pngs) == 4, pngs
    side = 8 * (28 + 2) + 2  # an 8 x 8 grid of 28 px digits with 2 px padding
    assert PICTURE_LIMIT == 64
    for png in pngs:
        with Image.open(png) as img:
            assert max(img.size) <= side, (png, img.size)
    # the atlas's unit pages show the best 64 too
    from interp.atlas import build_atlas

    index = build_atlas(tmp_path / "run", dataset=data, progress=False)
    page = (index.parent / "dense_1" / "unit_0001.html").read_text(encoding="utf-8")
    assert "Top 64 of 100 data set examples" in page and "Bottom 64 of 100 data set examples" in page
    assert page.count('<figure class="ex">') == 2 * 64


def test_topk_k_zero_on_the_command_line_is_one_line(run_folder):
    proc = run_cli(
        [
            "visualize",
            f"ckpt={run_folder / 'checkpoints' / 'last.ckpt'}",
            "callbacks=[topk]",
            "callbacks.topk.k=0",
            "units=[0]",
        ],
        _env(),
        run_folder.parent,
        timeout=300,
    )
    line = one_line_error(proc)
    assert "TopKExamples: k must be a whole number >= 1, got 0" in line, line
