"""Interpretation callbacks on real Lightning trainers, read back from real TensorBoard event files."""

from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import event_images, small_cnn_layers
from interp.callbacks import (
    AttributionCheck,
    AttributionMismatchError,
    DeepDream,
    EmbeddingProjector,
    FeatureVisualization,
    InterpretationCallback,
    Inversion,
    TopKExamples,
    UnitPanel,
)
from interp.errors import InterpError
from interp.records import read_record


class UserCNN(L.LightningModule):
    """A user's own model: nothing of interp in it."""

    def __init__(self):
        super().__init__()
        self.features, self.head = small_cnn_layers()
        self.example_input_array = torch.zeros(1, 1, 28, 28)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def quiet_trainer(tmp_path, callbacks, logger=False, max_epochs=1, **kwargs) -> L.Trainer:
    """A Trainer for these tests: no progress bar, no model summary, its files under ``tmp_path``."""
    return L.Trainer(
        max_epochs=max_epochs,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


class UserData(L.LightningDataModule):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=64, shuffle=True)

    def test_dataloader(self):
        return DataLoader(TensorDataset(self.x[:64], self.y[:64]), batch_size=64)


def image_tags(log_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for f in Path(log_dir).glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "histograms": 0})
        acc.Reload()
        tags |= set(event_images(f)) | set(acc.Tags()["scalars"]) | set(acc.Tags()["histograms"])
    return tags


def test_units_out_of_range_are_refused_before_training(tmp_path, mnist_small):
    x, y = mnist_small[0][:256], mnist_small[1][:256]
    for callback, message in (
        (TopKExamples("features.3", units=[3, 16]), "unit 16 is out of range: features.3 has 16"),
        (TopKExamples("features.9"), "unknown layer 'features.9'"),
    ):
        trainer = quiet_trainer(tmp_path, [callback])
        model = UserCNN()
        with pytest.raises(InterpError, match=message):
            trainer.fit(model, UserData(x, y))
        assert trainer.global_step == 0


@pytest.mark.slow
def test_callbacks_on_a_user_cnn(tmp_path, mnist_small):
    x, y = mnist_small[0][:1024], mnist_small[1][:1024]
    model = UserCNN()
    callbacks = [
        TopKExamples(layer="features.3", units=[0, 5], k=9, progress=False),
        FeatureVisualization(layer="features.3", units=[0, 5], steps=16, progress=False),
        UnitPanel(layer="features.3", units=[5], steps=16),
        Inversion(layer="features.2", n_examples=2, steps=20, split="train"),
        DeepDream(layer="features.3", images=x[:1], size=None, octaves=2, steps_per_octave=3, roll=2, progress=False),
        AttributionCheck(layer="features.3", units=[5], k=4, ig_steps=16, n_check=16),
    ]
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = quiet_trainer(tmp_path, callbacks, logger=logger)
    trainer.fit(model, UserData(x, y))
    tags = image_tags(tmp_path)
    for tag in (
        "topk/features.3/unit_005",
        "featvis/features.3/unit_005",
        "panel/features.3/unit_005",
        "inversion/features.2",
        "dream/features.3",
        "attribution/features.3/unit_005",
        "captum/features.3/activation_maxdiff",
        "featvis/features.3/ratio_to_dataset_max",
    ):
        assert tag in tags, tag
    png = tmp_path / "interp" / "panel" / "features.3" / "unit_005.png"
    assert png.is_file()
    assert callbacks[0].result.top.positions is not None  # conv layer: the position of each maximum
    assert callbacks[5].result.grad_maxdiff <= 1e-5
    # the panel result maps each unit to its PNG
    assert callbacks[2].result[5] == png


def test_panel_reuses_results_only_when_their_settings_match(tmp_path, mnist_small, monkeypatch):
    """Without a Trainer, callbacks share results through one store passed to ``apply``."""
    import interp.steps.panel as panel_step
    import interp.steps.topk as topk_step
    from interp.report import Reporter
    from interp.store import ResultStore

    x, y = mnist_small[0][:512], mnist_small[1][:512]
    calls = {"mine": 0, "render": 0}
    real_mine, real_render = topk_step.mine_with, panel_step.feature_visualization  # every mining goes through it

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    model = UserCNN()
    topk = TopKExamples("features.3", units=[1, 2], k=4, progress=False, on_error="raise")
    featvis = FeatureVisualization("features.3", units=[1, 2], steps=4, progress=False, on_error="raise")
    dataset = torch.utils.data.TensorDataset(x, y)
    reporter, store = Reporter(tmp_path), ResultStore()
    for cb in (topk, featvis):
        cb.apply(model, dataset, reporter, store=store)
    monkeypatch.setattr(topk_step, "mine_with", counting("mine", real_mine))
    monkeypatch.setattr(panel_step, "feature_visualization", counting("render", real_render))
    same = UnitPanel("features.3", units=[2], k=4, steps=4, dataset=dataset)
    same.apply(model, dataset, reporter, store=store)
    assert calls == {"mine": 0, "render": 0}
    # more examples than the top-k kept, and other optimization steps: both are computed again
    other = UnitPanel("features.3", units=[2], k=8, steps=6, dataset=dataset)
    other.apply(model, dataset, reporter, store=store)
    assert calls == {"mine": 1, "render": 1}
    # a store of its own: nothing to reuse
    UnitPanel("features.3", units=[2], k=4, steps=4, dataset=dataset).apply(model, dataset, reporter)
    assert calls == {"mine": 2, "render": 2}


def test_scalars_reach_every_logger(tmp_path, mnist_small):
    import csv

    from lightning.pytorch.loggers import CSVLogger

    x, y = mnist_small[0][:256], mnist_small[1][:256]
    cb = Inversion("features.2", n_examples=2, steps=4, split="train", progress=False, on_error="raise")
    loggers = [TensorBoardLogger(tmp_path, name="", version=""), CSVLogger(tmp_path / "csv", name="", version="")]
    trainer = quiet_trainer(tmp_path, [cb], logger=loggers, limit_train_batches=2)
    trainer.fit(UserCNN(), UserData(x, y))
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    tag = "inversion/features.2/relative_error"
    values = [r[tag] for r in rows if r.get(tag)]
    assert values and abs(float(values[0]) - float(cb.result.error.mean())) < 1e-5
    assert tag in image_tags(tmp_path)


class Failing(InterpretationCallback):
    needs_data = False

    def interpret(self, model, dataset, reporter, step, others, progress):
        raise RuntimeError("this interpretation breaks")


def _fit_with(tmp_path, callback, x, y):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = quiet_trainer(tmp_path, [ckpt, callback], limit_train_batches=3)
    return trainer, UserData(x, y)


def test_failing_callback_keeps_the_checkpoint(tmp_path, mnist_small):
    x, y = mnist_small[0][:256], mnist_small[1][:256]
    trainer, dm = _fit_with(tmp_path / "a", Failing("features.0", on_error="raise"), x, y)
    with pytest.raises(RuntimeError, match="breaks"):
        trainer.fit(UserCNN(), dm)
    last = tmp_path / "a" / "ckpt" / "last.ckpt"
    assert last.is_file()
    restored = UserCNN.load_from_checkpoint(last)
    assert restored(x[:2]).shape == (2, 10)

    trainer, dm = _fit_with(tmp_path / "b", Failing("features.0"), x, y)
    with pytest.warns(UserWarning, match="this interpretation breaks"):
        trainer.fit(UserCNN(), dm)
    assert (tmp_path / "b" / "ckpt" / "last.ckpt").is_file()


def test_on_demand_run_restores_mode_and_survives_inference_mode(tmp_path, trained_mlp, mnist_small):
    x, y = mnist_small[0][:512], mnist_small[1][:512]
    trainer = L.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path, max_epochs=0)
    trainer.fit(trained_mlp, UserData(x, y))
    cb = FeatureVisualization("dense_1", units=[32], steps=8, progress=False, on_error="raise")
    for mode in (True, False):
        trained_mlp.train(mode)
        with torch.inference_mode():
            cb.run(trainer, trained_mlp)
        assert trained_mlp.training is mode
    assert cb.result.image("plain", 32).shape == (1, 28, 28)
    # no TensorBoard logger: PNGs only
    assert (tmp_path / "interp" / "featvis" / "dense_1" / "unit_032.png").is_file()


def test_apply_runs_a_step_without_a_trainer(tmp_path, trained_mlp, mnist_small):
    from interp.report import Reporter

    x, y = mnist_small[0][:300], mnist_small[1][:300]
    cb = TopKExamples("dense_1", units=[32], k=4, progress=False)
    result = cb.apply(trained_mlp, torch.utils.data.TensorDataset(x, y), Reporter(tmp_path))
    assert result is cb.result and result.top.indices.shape == (1, 4)
    saved = read_record(tmp_path / "interp" / "topk" / "dense_1" / "topk.pt")
    assert torch.equal(saved.indices, result.top.indices) and saved.labels.shape == (1, 4)
    # the unit's activation over the whole data set, for the atlas's histogram
    assert saved.hist.shape == (1, 40) and int(saved.hist.sum()) == 300 and saved.hist_edges.shape == (1, 41)


def break_capture(monkeypatch):
    """Deliberately break layer capture: keep the hooked tensor itself (no copy) and let the
    forward pass run on, so the in-place ReLU after the layer overwrites what was captured."""
    import interp.optvis.attribution as attribution
    from interp.optvis.capture import Capture

    monkeypatch.setattr(attribution, "Capture", lambda model, layers: Capture(model, layers, stop=False, clone=False))


def test_attribution_check_raises_on_mismatch(tmp_path, mnist_small, monkeypatch):
    break_capture(monkeypatch)
    x, y = mnist_small[0][:128], mnist_small[1][:128]
    cb = AttributionCheck(
        "features.0", units=[0], k=2, ig_steps=8, n_check=8, sanity_check=False, on_mismatch="raise", on_error="raise"
    )
    trainer = quiet_trainer(tmp_path, [cb], limit_train_batches=1)
    with pytest.raises(AttributionMismatchError, match="disagree with Captum"):
        trainer.fit(UserCNN(), UserData(x, y))


@pytest.mark.slow
def test_projector_files(tmp_path, trained_mlp, mnist_root):
    from interp.data import MNISTDataModule

    dm = MNISTDataModule(root=str(mnist_root), subset=1000, val_size=100, download=False)
    cb = EmbeddingProjector("dense_2", n=200, tsne=True)
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = quiet_trainer(tmp_path, [cb], max_epochs=0, logger=logger)
    trainer.fit(trained_mlp, dm)  # no epochs: nothing ran yet; run on demand
    cb.run(trainer, trained_mlp)
    assert cb.result.features.shape == (200, 512)
    configs = list(tmp_path.glob("**/projector_config.pbtxt"))
    assert configs and "projector/dense_2" in configs[0].read_text()
    assert list(tmp_path.glob("**/sprite.png")) and list(tmp_path.glob("**/metadata.tsv"))
    assert (tmp_path / "interp" / "tsne" / "dense_2.png").is_file()


def test_every_n_epochs_logs_at_each_epoch(tmp_path, mnist_small):

    x, y = mnist_small[0][:256], mnist_small[1][:256]
    cb = FeatureVisualization(
        "features.3", units=[1], steps=4, every_n_epochs=1, run_on_train_end=False, progress=False, on_error="raise"
    )
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = quiet_trainer(tmp_path, [cb], max_epochs=2, logger=logger, limit_train_batches=2)
    trainer.fit(UserCNN(), UserData(x, y))
    steps = []
    for f in tmp_path.glob("events.out.tfevents.*"):
        steps += [step for step, _ in event_images(f).get("featvis/features.3/unit_001", [])]
    assert sorted(steps) == [2, 4]  # the trainer's global step after each epoch of 2 batches


def test_attribution_check_with_all_methods_logs_each_sanity_check(tmp_path, mnist_small):
    from interp.report import Reporter

    x, y = mnist_small[0][:300], mnist_small[1][:300]
    cb = AttributionCheck(
        "features.3", units=[5], k=3, n_check=4, ig_steps=8, methods=["ig", "deeplift", "occlusion", "gradcam"]
    )
    summary = cb.apply(UserCNN(), torch.utils.data.TensorDataset(x, y), Reporter(tmp_path))
    for method in ("ig", "deeplift", "occlusion", "gradcam"):
        assert -1 <= summary.means[f"randomization_spearman_{method}"] <= 1
    saved = read_record(tmp_path / "interp" / "attribution" / "features.3" / "attribution.pt")
    assert saved.maps["gradcam"].shape == (1, 3, 28, 28) and saved.examples.shape == (1, 3, 1, 28, 28)
    with pytest.raises(InterpError, match="unknown attribution method 'lime'"):
        AttributionCheck("features.3", methods=["lime"])


def test_the_randomization_check_runs_on_the_first_sanity_units_units(tmp_path, mnist_small, monkeypatch):
    """Every unit gets its maps; the model-randomization check (two more attributions per unit
    and method) only the first ``sanity_units`` units, and the layer means come from those."""
    from interp.report import Reporter
    from interp.steps import attribution as attribution_step

    checked: list[int] = []
    real = attribution_step.randomization_check

    def counting(model, layer, unit, *args, **kwargs):
        checked.append(unit)
        return real(model, layer, unit, *args, **kwargs)

    monkeypatch.setattr(attribution_step, "randomization_check", counting)
    x, y = mnist_small[0][:300], mnist_small[1][:300]
    cb = AttributionCheck("features.3", units=[2, 5, 7], k=2, n_check=4, ig_steps=4, sanity_units=2, progress=False)
    summary = cb.apply(UserCNN(), torch.utils.data.TensorDataset(x, y), Reporter(tmp_path))
    assert sorted(checked) == [2, 2, 5, 5]  # ig and saliency, units 2 and 5 only
    assert -1 <= summary.means["randomization_spearman_ig"] <= 1
    saved = read_record(tmp_path / "interp" / "attribution" / "features.3" / "attribution.pt")
    assert saved.units == [2, 5, 7] and saved.maps["ig"].shape[0] == 3
    checked.clear()
    AttributionCheck("features.3", units=[2, 5, 7], k=2, n_check=4, ig_steps=4, sanity_units=None).apply(
        UserCNN(), torch.utils.data.TensorDataset(x, y)
    )
    assert sorted(checked) == [2, 2, 5, 5, 7, 7]


def _fit_briefly(tmp_path, x, y, callbacks):
    """Two training steps of a fresh UserCNN on one fixed data set object with ``callbacks``; the PNGs written."""
    torch.manual_seed(0)
    model = UserCNN()
    data = UserData(x, y)
    fixed = TensorDataset(x, y)
    data.train_dataloader = lambda: DataLoader(fixed, batch_size=64, shuffle=True)  # type: ignore[method-assign]
    trainer = quiet_trainer(tmp_path, callbacks, enable_checkpointing=False, limit_train_batches=2)
    trainer.fit(model, data)
    return sorted(p.relative_to(tmp_path) for p in (tmp_path / "interp").rglob("*.png"))


@pytest.mark.parametrize("topk_first", [True, False])
def test_reuse_never_drops_a_view_and_covers_the_units_it_lacks(tmp_path, mnist_small, topk_first):
    """A top-k of units [0, 5] and a feature visualization of units 0-7 with the prior view, in
    either order: the prior view is rendered for all 8 units (no warning, no lost view); after the
    top-k, every unit is compared with its top examples (those the top-k lacked are mined)."""
    import warnings

    x, y = mnist_small[0][:1024], mnist_small[1][:1024]
    topk = TopKExamples(layer="features.3", units=[0, 5], k=9, progress=False)
    featvis = FeatureVisualization(
        layer="features.3", units=range(8), steps=8, views=("plain", "prior"), progress=False
    )
    callbacks = [topk, featvis] if topk_first else [featvis, topk]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*(does not have many workers|num_workers|LeafSpec).*")
        _fit_briefly(tmp_path, x, y, callbacks)
    result = featvis.result
    assert result is not None and result.units == list(range(8))
    assert result.renderings["prior"].images[-1].shape[0] == 8
    if topk_first:  # the top-k's two units were reused and the other six mined: a ratio for each unit
        assert result.ratios["prior"].shape == (8,) and result.ratios["plain"].shape == (8,)


@pytest.mark.parametrize("topk_first", [True, False])
def test_topk_and_attribution_share_one_mining_in_either_order(tmp_path, mnist_small, topk_first, monkeypatch):
    """The store shares the top-k between TopKExamples and AttributionCheck: whichever runs first
    mines (all the units either needs), the other reuses; the results do not depend on the order."""
    import interp.steps.topk as steps_topk

    x, y = mnist_small[0][:512], mnist_small[1][:512]
    calls: list[list[int]] = []
    real = steps_topk.mine_with  # every mining goes through it

    def counting(model, layer, units, *args, **kwargs):
        calls.append(list(units))
        return real(model, layer, units, *args, **kwargs)

    monkeypatch.setattr(steps_topk, "mine_with", counting)
    topk = TopKExamples(layer="features.3", units=[0, 5], k=8, progress=False)
    attribution = AttributionCheck(
        layer="features.3", units=[5, 7], k=4, ig_steps=4, n_check=8, sanity_check=False, scores=False
    )
    _fit_briefly(tmp_path, x, y, [topk, attribution] if topk_first else [attribution, topk])
    assert topk.result is not None and attribution.result is not None
    # topk first: it mines 0 and 5, the attribution mines only 7; attribution first: it mines 5 and 7 at k=4,
    # the top-k needs k=8 and mines every unit at k=8 once
    assert calls == ([[0, 5], [7]] if topk_first else [[5, 7], [5, 7, 0]])
    saved = read_record(tmp_path / "interp" / "attribution" / "features.3" / "attribution.pt")
    assert saved.examples.shape[:2] == (2, 4)


@pytest.mark.slow
def test_the_order_of_the_callbacks_does_not_change_their_pictures(tmp_path, mnist_small):
    """Top-k, feature visualization (with the views that need top examples) and the panel reuse each
    other through the store: in every order they write the same pictures, byte for byte."""
    import itertools

    x, y = mnist_small[0][:512], mnist_small[1][:512]
    settings = dict(units=[1, 2, 5], steps=6, views=("plain", "prototype"))
    runs = {}
    for order in itertools.permutations(["topk", "featvis", "panel"]):
        make = {
            "topk": lambda: TopKExamples("features.3", units=[1, 2, 5], k=16, progress=False, on_error="raise"),
            "featvis": lambda: FeatureVisualization("features.3", progress=False, on_error="raise", **settings),
            "panel": lambda: UnitPanel("features.3", k=16, on_error="raise", **settings),
        }
        folder = tmp_path / "-".join(order)
        files = _fit_briefly(folder, x, y, [make[name]() for name in order])
        runs[order] = (folder, files)
    (first, (folder0, files0)), *rest = runs.items()
    assert any("prototype" in str(f) for f in files0) and any("panel" in str(f) for f in files0)
    for order, (folder, files) in rest:
        assert files == files0, order
        for f in files0:
            assert (folder / f).read_bytes() == (folder0 / f).read_bytes(), (order, f)
