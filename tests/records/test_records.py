"""interp.records: the result files as typed, versioned records. Every record round-trips through the one writer
(``save_record``) and the one reader (``read_record``); files written before versions (version 0) are migrated;
a file of another version or format is refused in one line, by the reader and by ``python -m interp atlas``."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from helpers import one_line_error, run_cli
from interp.errors import InterpError
from interp.optvis import Rendering
from interp.optvis.topk import TopK
from interp.records import (
    FORMAT_VERSION,
    RECORDS,
    AttributionRecord,
    ExpressionsRecord,
    FeatVisRecord,
    TemplatesRecord,
    TopKRecord,
    read_record,
    save_record,
)
from interp.report import Reporter
from interp.steps.featvis import Views
from interp.steps.topk import Examples

G = torch.Generator().manual_seed(0)


def rand(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=G)


def records() -> list:
    """One record of each kind, every optional field filled, and the smallest ones."""
    U, k = 3, 4
    units = [2, 5, 7]
    scores = {"deletion_auc": torch.tensor([[0.1, math.nan, 0.3], [0.4, 0.5, 0.6]], dtype=torch.float64)}
    return [
        FeatVisRecord(
            units,
            "spatial max",
            {"plain": rand(U, 1, 8, 8), "prototype": rand(U, 1, 8, 8)},
            {"plain": rand(U), "prototype": rand(U)},
            {"plain": torch.tensor([0.5, math.nan, 2.0])},
            {"legibility": rand(U)},
        ),
        FeatVisRecord([0], images={"plain": rand(1, 3, 4, 4)}, activations={"plain": rand(1)}),
        TemplatesRecord(units, rand(U, 1, 5, 5) * 2 - 1),
        TopKRecord(
            units,
            rand(U, k).sort(1, descending=True).values,
            torch.randint(0, 100, (U, k), generator=G),
            positions=torch.randint(0, 12, (U, k, 2), generator=G),
            labels=torch.randint(-1, 10, (U, k), generator=G),
            bottom_values=-rand(U, k),
            bottom_indices=torch.randint(0, 100, (U, k), generator=G),
            hist=rand(U, 40),
            hist_edges=rand(U, 41),
            columns={"sparsity": torch.tensor([1, 2, 3])},
        ),
        TopKRecord([1], rand(1, 2), torch.tensor([[4, 9]])),
        AttributionRecord(
            units,
            rand(U, k, 1, 8, 8),
            {"ig": rand(U, k, 8, 8), "saliency": rand(U, k, 8, 8)},
            ["ig", "saliency"],
            scores,
        ),
        AttributionRecord(units, rand(U, k, 1, 8, 8), {"gradcam": rand(U, k, 8, 8)}),
        ExpressionsRecord(rand(1, 3, 6, 6), rand(7), rand(7, 3, 6, 6), rand(7, 7), rand(7, 3, 6, 6), rand(7, 7)),
    ]


@pytest.mark.parametrize("index", range(len(records())))
def test_every_record_round_trips(tmp_path, index):
    record = records()[index]
    path = save_record(Reporter(tmp_path), "block/conv.1", record)
    assert path == tmp_path / "interp" / record.KIND / "block%2Fconv.1" / record.FILE
    raw = torch.load(path, weights_only=True)  # plain tensors and values only
    assert raw["format"] == record.KIND and raw["version"] == FORMAT_VERSION == 1
    back = read_record(path)
    assert type(back) is type(record) and back == record
    for name, value in record.field_values().items():  # field by field, bitwise
        got = getattr(back, name)
        if isinstance(value, torch.Tensor):
            assert got.dtype == value.dtype and torch.equal(got.nan_to_num(7.0), value.nan_to_num(7.0)), name
        elif isinstance(value, dict):
            assert list(got) == list(value), name
        else:
            assert got == value, name


def test_records_know_their_files():
    assert {kind: r.FILE for kind, r in RECORDS.items()} == {
        "featvis": "featvis.pt",
        "templates": "templates.pt",
        "topk": "topk.pt",
        "attribution": "attribution.pt",
        "expressions": "expressions.pt",
    }
    assert all(r.FORMAT_VERSION == FORMAT_VERSION for r in RECORDS.values())
    made = records()
    assert made[0] != made[1] and made[0] == copy.deepcopy(made[0]) and made[3] != made[0]


def test_views_and_examples_are_records_and_write_as_such(tmp_path):
    dataset = torch.utils.data.TensorDataset(rand(20, 1, 4, 4), torch.arange(20) % 3)
    top = TopK(rand(2, 3), torch.tensor([[1, 2, 3], [4, 5, 6]]), None, torch.tensor([3, 5]), "fc")
    bottom = TopK(-rand(2, 3), torch.tensor([[7, 8, 9], [10, 11, 12]]), None, torch.tensor([3, 5]), "fc", False)
    examples = Examples(top, bottom, dataset)
    assert isinstance(examples, TopKRecord) and examples.units == [3, 5] and examples.row(5) == 1
    assert examples.labels.tolist() == [[1, 2, 0], [1, 2, 0]] and examples.bottom_indices is bottom.indices
    back = read_record(save_record(Reporter(tmp_path), "fc", examples))
    assert type(back) is TopKRecord and back == examples and torch.equal(back.dataset_max, top.values[:, 0])

    image = rand(2, 1, 4, 4)
    views = Views([3, 5], {"plain": Rendering([image], [1], rand(1, 2), rand(2))}, {"plain": rand(2)})
    assert isinstance(views, FeatVisRecord) and views.images["plain"] is image and views.covers([5])
    back = read_record(save_record(Reporter(tmp_path), "fc", views))
    assert type(back) is FeatVisRecord and back == views and torch.equal(back.images["plain"], image)


def test_nothing_is_written_where_the_reporter_is_disabled(tmp_path):
    assert save_record(Reporter(tmp_path, enabled=False), "fc", records()[2]) is None
    assert not (tmp_path / "interp").exists()


# --- version 0: the files written before versions ---------------------------------------------------


def _write(tmp_path, kind: str, content: dict):
    path = tmp_path / "interp" / kind / "fc" / RECORDS[kind].FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


def test_version_0_files_are_migrated(tmp_path):
    """The dicts the steps saved before records, built by hand, read as records."""
    units = torch.tensor([0, 4])
    fv = {
        "units": units,
        "statistic": "",
        "plain": rand(2, 1, 8, 8),
        "activation_plain": rand(2),
        "ratio_plain": rand(2),
        "prior": rand(2, 1, 8, 8),
        "activation_prior": rand(2),
        "legibility": torch.tensor([0.1, 0.9]),  # another per-unit number: a column
    }
    got = read_record(_write(tmp_path, "featvis", fv))
    assert got == FeatVisRecord(
        [0, 4],
        "",
        {"plain": fv["plain"], "prior": fv["prior"]},
        {"plain": fv["activation_plain"], "prior": fv["activation_prior"]},
        {"plain": fv["ratio_plain"]},
        {"legibility": fv["legibility"]},
    )
    values = rand(2, 3)
    tk = {
        "units": units,
        "values": values,
        "indices": torch.tensor([[1, 2, 3], [4, 5, 6]]),
        "dataset_max": values[:, 0].clone(),
        "labels": torch.tensor([[0, 1, -1], [2, 2, 2]]),
        "hist": rand(2, 5),
        "hist_edges": rand(2, 6),
    }
    got = read_record(_write(tmp_path, "topk", tk))
    assert got == TopKRecord(
        [0, 4], values, tk["indices"], labels=tk["labels"], hist=tk["hist"], hist_edges=tk["hist_edges"]
    )
    at = {
        "units": units,
        "examples": rand(2, 3, 1, 8, 8),
        "ig": rand(2, 3, 8, 8),
        "saliency": rand(2, 3, 8, 8),
        "score_methods": ["ig"],
        "scores": {"sparseness": rand(1, 2).double()},
    }
    got = read_record(_write(tmp_path, "attribution", at))
    assert got == AttributionRecord(
        [0, 4], at["examples"], {"ig": at["ig"], "saliency": at["saliency"]}, ["ig"], at["scores"]
    )
    tp = {"units": units, "weights": rand(2, 1, 5, 5)}
    assert read_record(_write(tmp_path, "templates", tp)) == TemplatesRecord([0, 4], tp["weights"])
    names = ["face", "face_probs", "rendered", "rendered_probs", "accentuated", "accentuated_probs"]
    ex = {name: rand(2, 2) for name in names}
    assert read_record(_write(tmp_path, "expressions", ex)) == ExpressionsRecord(*ex.values())


# --- refused in one line ------------------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert isinstance(exc.value, InterpError) and "\n" not in message, message
    return message


def test_an_unknown_version_is_one_line_naming_it(tmp_path):
    path = save_record(Reporter(tmp_path), "fc", records()[2])
    content = torch.load(path, weights_only=True)
    torch.save({**content, "version": 99}, path)
    with pytest.raises(InterpError) as exc:
        read_record(path)
    line = _one_line(exc)
    assert str(path) in line and "version 99" in line and "versions 0, 1" in line, line


def test_a_foreign_format_is_one_line_naming_its_version(tmp_path):
    path = save_record(Reporter(tmp_path), "fc", records()[2])
    content = torch.load(path, weights_only=True)
    torch.save({**content, "format": "somebody.else"}, path)
    with pytest.raises(InterpError) as exc:
        read_record(path)
    line = _one_line(exc)
    assert str(path) in line and "'somebody.else'" in line and "version 1" in line and "templates" in line, line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ({"units": torch.tensor([0]), "values": torch.zeros(1, 2)}, "'indices' is not a tensor"),
        ({"units": torch.tensor([0, 1]), "values": torch.zeros(1, 2), "indices": torch.zeros(1, 2)}, "one row per"),
        ({"values": torch.zeros(1, 2)}, "not an interpretation result"),
        ([1, 2], "not an interpretation result"),
        ({"format": "topk", "version": True, "units": torch.tensor([0])}, "version True"),
    ],
)
def test_malformed_files_are_one_line(tmp_path, content, says):
    path = _write(tmp_path, "topk", content)
    with pytest.raises(InterpError) as exc:
        read_record(path)
    line = _one_line(exc)
    assert str(path) in line and says in line, line


def test_the_atlas_cli_refuses_a_newer_featvis_file_in_one_line(run_folder):
    """``python -m interp atlas`` of a run holding a version-99 ``featvis.pt``: exit 2, one line naming it."""
    import os

    path = save_record(Reporter(run_folder), "dense_1", records()[1])
    torch.save({**torch.load(path, weights_only=True), "version": 99}, path)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("INTERP_DEBUG", None)
    proc = run_cli(["atlas", f"ckpt={run_folder / 'checkpoints' / 'last.ckpt'}"], env, run_folder.parent, timeout=300)
    line = one_line_error(proc)
    assert str(path) in line and "version 99" in line and "versions 0, 1" in line, line
