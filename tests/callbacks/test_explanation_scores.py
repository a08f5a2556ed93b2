"""Explanation scores where a person sees them: ``AttributionCheck`` scores every method's maps
(interp.optvis.scores), writes them per unit into ``attribution.pt``, as a TEXT table and scalars into the real
TensorBoard event file, and the atlas shows them beside each map and as a sortable table on the layer page
(checked in headless Chromium: skipped where it is missing, a failure in CI). Also: the randomized copy of the
sanity check never gives back the weights a model was built with.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from interp.callbacks import AttributionCheck
from interp.errors import InterpError
from interp.optvis import scores as sc
from interp.optvis.attribution import randomized_copy
from interp.records import AttributionRecord, read_record
from interp.steps.attribution import SCORES, TITLES, ScoreSettings, score_header

LAYER = "dense_1"
UNITS = [0, 1, 2, 3, 4]
SCORED = 3  # the first three units are scored, units 3 and 4 are not
METHODS = ("ig", "saliency", "lrp")
K = 4
CORRELATIONS = ("faithfulness", "randomization")  # nan for a constant map


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, trained_mlp, mnist_small):
    """One AttributionCheck on the quick-trained MLP, written through Lightning's TensorBoard logger as a training
    run writes it: (run folder, event file, the callback)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from interp.report import Reporter

    run = tmp_path_factory.mktemp("scored")
    logger = TensorBoardLogger(run, name="", version="")
    reporter = Reporter(logger.log_dir, logger.experiment, loggers=[logger])
    x, y = mnist_small[0][:600], mnist_small[1][:600]
    cb = AttributionCheck(
        LAYER, units=UNITS, k=K, n_check=8, ig_steps=8, methods=METHODS, score_units=SCORED, progress=False
    )
    cb.apply(trained_mlp, torch.utils.data.TensorDataset(x, y), reporter)
    logger.finalize("success")
    (events,) = Path(logger.log_dir).glob("events.out.tfevents.*")
    return Path(logger.log_dir), events, cb


def _accumulator(events: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events), size_guidance={"tensors": 0, "scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _saved(run: Path) -> AttributionRecord:
    return read_record(run / "interp" / "attribution" / LAYER / "attribution.pt", "attribution")


def test_the_text_table_is_in_the_event_file_with_every_method_and_metric(scored_run):
    _, events, cb = scored_run
    acc = _accumulator(events)
    tags = [t for t in acc.Tags()["tensors"] if acc.SummaryMetadata(t).plugin_data.plugin_name == "text"]
    (tag,) = [t for t in tags if t.startswith(f"attribution_scores/{LAYER}/table")]
    (event,) = acc.Tensors(tag)
    markdown = event.tensor_proto.string_val[0].decode()
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["method", *(score_header(m) for m in SCORES)]
    assert "deletion AUC (lower is better)" in header and "insertion AUC (higher is better)" in header
    rows = {c[0]: c[1:] for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[2:])}
    assert sorted(rows) == sorted(TITLES[m] for m in METHODS)
    assert "LRP (epsilon-plus-flat, Zennit)" in rows
    for method in METHODS:  # the table's numbers are the medians the summary returns
        for metric, cell in zip(SCORES, rows[TITLES[method]]):
            expected = cb.result.scores[metric][method]
            assert cell == ("–" if math.isnan(expected) else f"{expected:.3g}"), (method, metric, cell, expected)
    assert f"median over {SCORED} units" in markdown


def test_scalars_per_layer_metric_and_method(scored_run):
    _, events, cb = scored_run
    acc = _accumulator(events)
    scalars = set(acc.Tags()["scalars"])
    for metric in SCORES:
        for method in METHODS:
            tag = f"attribution_scores/{LAYER}/{metric}/{method}"
            if math.isnan(cb.result.scores[metric][method]):  # LRP's constant maps: no correlation
                assert method == "lrp" and metric in CORRELATIONS and tag not in scalars
                continue
            assert tag in scalars, tag
            (value,) = [e.value for e in acc.Scalars(tag)]
            assert value == pytest.approx(cb.result.scores[metric][method], rel=1e-6, abs=1e-7)
    # the picture of a scored unit says its scores beside it, and keeps its colour legend (a column on the right)
    desc = acc.SummaryMetadata(f"attribution/{LAYER}/unit_000").summary_description
    assert all(SCORES[m][0] in desc for m in SCORES) and TITLES["lrp"] in desc
    assert "deletion AUC" not in acc.SummaryMetadata(f"attribution/{LAYER}/unit_004").summary_description


def test_result_file_holds_the_scores_per_method_and_unit(scored_run, trained_mlp):
    run, _, cb = scored_run
    saved = _saved(run)
    assert saved.score_methods == list(METHODS)
    assert sorted(saved.scores) == sorted(SCORES)
    for metric, t in saved.scores.items():
        assert t.shape == (len(METHODS), len(UNITS)) and t.dtype == torch.float64
        assert torch.isnan(t[:, SCORED:]).all(), metric  # units not scored
        assert torch.isfinite(t[: -1 if metric in CORRELATIONS else None, :SCORED]).all(), metric
        for i, method in enumerate(METHODS):
            assert float(t[i, :SCORED].median()) == pytest.approx(cb.result.scores[metric][method], nan_ok=True)
    # LRP's flat rule at the first (fully connected) layer gives every pixel of an input the same relevance: equal
    # subsets have equal sums and all ranks tie, so the correlations are nan ("–" in the table), the Gini index 0
    lrp = saved.maps["lrp"][:SCORED]
    assert torch.allclose(lrp, lrp[:, :, :1, :1].expand_as(lrp))
    for metric in CORRELATIONS:
        assert torch.isnan(saved.scores[metric][METHODS.index("lrp"), :SCORED]).all()
    assert (saved.scores["sparseness"][METHODS.index("lrp"), :SCORED] == 0).all()
    # the numbers are those of interp.optvis.scores on the saved examples and maps (deletion: 16 steps of 49 pixels)
    x, maps = saved.examples[1], saved.maps["ig"][1].unsqueeze(1)
    auc = sc.deletion(trained_mlp, LAYER, [1], x, maps[None], features_per_step=49).auc
    assert float(saved.scores["deletion_auc"][0, 1]) == pytest.approx(float(auc.mean()), rel=1e-9)
    gini = sc.sparseness(maps[None]).gini
    assert float(saved.scores["sparseness"][0, 1]) == pytest.approx(float(gini.mean()), rel=1e-9)
    # a linear unit: integrated gradients from black is exactly w * x, whose subset sums are the unit's drops
    assert float(saved.scores["faithfulness"][0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_scores_are_seeded_off_on_request_and_checked(tmp_path, trained_mlp, mnist_small):
    from interp.report import Reporter

    data = torch.utils.data.TensorDataset(mnist_small[0][:300], mnist_small[1][:300])
    common = dict(units=[5, 6], k=3, n_check=4, ig_steps=4, progress=False)
    first = AttributionCheck(LAYER, **common).apply(trained_mlp, data, Reporter(tmp_path / "a"))
    again = AttributionCheck(LAYER, **common).apply(trained_mlp, data, Reporter(tmp_path / "b"))
    assert first.scores == again.scores and sorted(first.scores) == sorted(SCORES)
    cheaper = AttributionCheck(LAYER, scores={"noise_samples": 1, "runs": 4}, **common)
    assert cheaper.settings.scores == ScoreSettings(noise_samples=1, runs=4)
    off = AttributionCheck(LAYER, scores=False, **common).apply(trained_mlp, data, Reporter(tmp_path / "c"))
    assert off.scores == {}
    saved = read_record(tmp_path / "c" / "interp" / "attribution" / LAYER / "attribution.pt")
    assert saved.scores is None and saved.score_methods is None
    with pytest.raises(InterpError, match="^AttributionCheck: scores: unknown setting 'samples' "):
        AttributionCheck(LAYER, scores={"samples": 3})
    with pytest.raises(InterpError, match="^AttributionCheck: scores: runs must be a whole number >= 2, got 1$"):
        AttributionCheck(LAYER, scores={"runs": 1})
    with pytest.raises(InterpError, match="^AttributionCheck: score_units must be a whole number >= 0, got -1$"):
        AttributionCheck(LAYER, score_units=-1)


def test_output_classes_are_scored(tmp_path, trained_mlp, mnist_small):
    from interp.report import Reporter

    data = torch.utils.data.TensorDataset(mnist_small[0][:300], mnist_small[1][:300])
    cb = AttributionCheck("dense_3", units=[3, 7], k=3, n_check=4, ig_steps=4, progress=False)
    summary = cb.apply(trained_mlp, data, Reporter(tmp_path))
    for metric in SCORES:
        assert all(math.isfinite(v) for v in summary.scores[metric].values()), metric
    # every layer up to the class is re-initialized in the cascade: the maps lose most of their structure
    assert summary.scores["randomization"]["saliency"] < 0.5


# --- randomized_copy ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MnistMLP", "MnistCNN"])
def test_randomized_copy_never_gives_back_the_weights_of_a_model_built_after_the_same_seed(name):
    import interp.models as models

    torch.manual_seed(0)
    model = getattr(models, name)()
    state = torch.random.get_rng_state()
    copy = randomized_copy(model, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is left as it was
    originals = dict(model.named_modules())
    layers = 0
    for layer_name, module in copy.named_modules():
        params = dict(module.named_parameters(recurse=False))
        if not params or isinstance(module, torch.nn.modules.batchnorm._NormBase):
            continue  # a norm layer resets to ones and zeros, whatever the seed
        layers += 1
        before = dict(originals[layer_name].named_parameters(recurse=False))
        assert not torch.equal(params["weight"], before["weight"]), layer_name
    assert layers >= 3
    # and still seeded: the same seed, the same copy; another seed, another one
    same, other = randomized_copy(model, seed=0), randomized_copy(model, seed=1)
    for a, b in zip(copy.parameters(), same.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(next(copy.parameters()), next(other.parameters()))


# --- the atlas -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atlas(scored_run, trained_mlp, mnist_small):
    from interp.atlas import build_atlas

    run, _, _ = scored_run
    x, y = mnist_small[0][:600], mnist_small[1][:600]
    return build_atlas(run, dataset=torch.utils.data.TensorDataset(x, y), model=trained_mlp, progress=False)


def test_atlas_pages_show_the_scores(atlas, scored_run):
    from interp.atlas.build import SCORE_COLUMNS

    assert list(SCORE_COLUMNS) == [(key, name, higher) for key, (name, higher) in SCORES.items()]
    run, _, cb = scored_run
    root = atlas.parent
    page = (root / LAYER / "unit_0001.html").read_text(encoding="utf-8")
    captions = re.findall(r'<td class="scores" data-method="([^"]+)">(.*?)</td>', page)
    assert [m for m, _ in captions] == list(METHODS)
    saved = _saved(run)
    for _, html in captions:
        assert html.count("data-score=") == len(SCORES)
        for metric in SCORES:
            assert SCORES[metric][0] in html
        assert "lower is better" in html and "higher is better" in html
    assert 'class="scores"' not in (root / LAYER / "unit_0004.html").read_text(encoding="utf-8")  # not scored
    layer = (root / LAYER / "index.html").read_text(encoding="utf-8")
    assert 'id="scores-summary"' in layer and 'id="scores-units"' in layer
    for metric in SCORES:
        assert score_header(metric).split(" (")[0] in layer
    assert saved.scores["deletion_auc"].shape[1] == len(UNITS)


def test_browser_unit_page_captions_each_map_with_its_scores(atlas, scored_run, browser):
    run, _, _ = scored_run
    rep = browser.open(atlas.parent / LAYER / "unit_0002.html")
    assert rep.console_errors == [], rep.console_errors
    assert rep.images and all(i["naturalWidth"] > 0 for i in rep.images)
    captions = browser.evaluate(
        "Array.from(document.querySelectorAll('table.attr td.scores')).map(td => ({method: td.dataset.method, "
        "text: td.innerText, width: td.getBoundingClientRect().width, row: td.parentElement.rowIndex, "
        "values: Object.fromEntries(Array.from(td.querySelectorAll('span[data-score]')).map("
        "s => [s.dataset.score, s.querySelector('b').textContent]))}))"
    )
    assert [c["method"] for c in captions] == list(METHODS)
    saved = _saved(run)
    for i, c in enumerate(captions):
        assert c["width"] > 0 and c["row"] == i + 1  # beside the method's row of maps (row 0: the examples)
        for metric in SCORES:
            assert SCORES[metric][0] in c["text"]
            value = float(saved.scores[metric][i, 2])
            shown = c["values"][metric]
            assert shown == "–" if math.isnan(value) else float(shown) == pytest.approx(value, rel=6e-3, abs=6e-4)
    # each method keeps its colour legend
    assert browser.evaluate("document.querySelectorAll('section .legend').length") >= len(METHODS)


def test_browser_layer_page_sorts_the_summary(atlas, scored_run, browser):
    run, _, cb = scored_run
    rep = browser.open(atlas.parent / LAYER / "index.html")
    assert rep.console_errors == [], rep.console_errors
    col = 1 + list(SCORES).index("deletion_auc")
    rows = "Array.from(document.querySelectorAll('#scores-summary tbody tr')).map(r => r.cells[0].textContent)"
    head = f"document.querySelectorAll('#scores-summary thead th')[{col}]"
    assert browser.evaluate(f"{head}.textContent").startswith("deletion AUC")
    assert "lower is better" in browser.evaluate(f"{head}.textContent")
    medians = cb.result.scores["deletion_auc"]
    browser.evaluate(f"{head}.click()")
    assert browser.evaluate(rows) == sorted(METHODS, key=lambda m: medians[m])  # lower is better: ascending
    assert browser.evaluate(f"{head}.getAttribute('aria-sort')") == "ascending"
    browser.evaluate(f"{head}.click()")
    assert browser.evaluate(rows) == sorted(METHODS, key=lambda m: -medians[m])
    # insertion: higher is better, so the first click puts the best first
    ins = f"document.querySelectorAll('#scores-summary thead th')[{1 + list(SCORES).index('insertion_auc')}]"
    browser.evaluate(f"{ins}.click()")
    inserted = cb.result.scores["insertion_auc"]
    assert browser.evaluate(rows) == sorted(METHODS, key=lambda m: -inserted[m])
    # the per-unit table sorts too, and links to the unit pages
    per_unit = "Array.from(document.querySelectorAll('#scores-units tbody tr')).map(r => +r.cells[0].dataset.value)"
    assert sorted(browser.evaluate(per_unit)) == sorted([u for u in UNITS[:SCORED] for _ in METHODS])
    browser.evaluate("document.querySelector('section.scores details').open = true")
    browser.evaluate("document.querySelectorAll('#scores-units thead th')[0].click()")
    browser.evaluate("document.querySelectorAll('#scores-units thead th')[0].click()")
    assert browser.evaluate(per_unit) == sorted(browser.evaluate(per_unit), reverse=True)
    assert browser.console_errors() == []
