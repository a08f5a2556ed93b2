"""Checkpoints and run configs as the CLI reads them: ``load_checkpoint_file`` reads a real Lightning
checkpoint and refuses what is not one (in one line, without running pickled code), ``build_from_run_config``
builds only the project's classes, and ``diff_hparams`` names what differs from the config."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from helpers import one_line
from interp.errors import CheckpointError, InterpError, UnsafeConfigError


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint written by Lightning for the project's MLP, the way `interp train` writes it. Not the shared
    ``trained_run`` (tests/conftest.py): these are fast tests, and two batches of random images in this process
    take a second where the CLI's training takes a subprocess and real MNIST."""
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    from interp.models import MnistMLP

    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28), torch.arange(64) % 10
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = MnistMLP(hidden=32)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=folder,
        callbacks=[ModelCheckpoint(dirpath=folder / "checkpoints", save_last=True)],
    )
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    return folder / "checkpoints" / "last.ckpt"


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (shutil.copyfile, (__file__, str(self.marker)))


def test_load_checkpoint_file_reads_a_real_checkpoint(real_checkpoint):
    from interp.models import MnistMLP
    from interp.runs import load_checkpoint_file

    ckpt = load_checkpoint_file(real_checkpoint)
    assert {"state_dict", "hyper_parameters", "pytorch-lightning_version"} <= set(ckpt)
    assert ckpt["hyper_parameters"]["hidden"] == 32
    assert MnistMLP.load_from_checkpoint(real_checkpoint, map_location="cpu").hparams.hidden == 32


def test_load_checkpoint_file_refuses_what_is_not_a_checkpoint(tmp_path, real_checkpoint):
    from interp.runs import load_checkpoint_file

    good = real_checkpoint.read_bytes()
    marker = tmp_path / "copied.txt"
    files = {
        "empty.ckpt": (b"", "the file is empty"),
        "truncated.ckpt": (good[: len(good) // 2], "corrupt, truncated or not a torch file: PytorchStreamReader"),
        "text.ckpt": (b"epoch: 3\nlr: 0.1\n", "not a torch file: a text file"),
        "raw_pickle.ckpt": (pickle.dumps({"state_dict": _Evil(marker)}), "corrupt, truncated or not a torch file"),
        "zip.ckpt": (b"PK\x03\x04garbage", "not a ZIP archive"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"state_dict": _Evil(marker)}, tmp_path / "evil.ckpt")
    files["evil.ckpt"] = (None, r"Python object \(shutil.copyfile\)")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain_weights.pt")
    files["plain_weights.pt"] = (None, "no state_dict, hyper_parameters")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    files["tensor.pt"] = (None, "holds a Tensor")
    torch.save(
        {"state_dict": {"w": "text"}, "hyper_parameters": {}, "pytorch-lightning_version": "2"}, tmp_path / "odd.ckpt"
    )
    files["odd.ckpt"] = (None, "not a dict of tensors")
    files["missing.ckpt"] = (None, "no such file")
    for name, (_, reason) in files.items():
        path = tmp_path / name
        with pytest.raises(CheckpointError, match=rf"^not a checkpoint of this project: .*{name} \(.*{reason}") as exc:
            load_checkpoint_file(path)
        message = one_line(exc)
        assert "weights_only" not in message and "safe_globals" not in message, message
        assert len(message) < 300, message
    assert not marker.exists()


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def no_instantiate(monkeypatch):
    """Fails the test if Hydra's instantiate is called."""
    import hydra.utils

    calls = []
    monkeypatch.setattr(hydra.utils, "instantiate", lambda *a, **k: calls.append(a) or pytest.fail("instantiate ran"))
    return calls


def test_build_from_run_config_builds_allowed_classes(tmp_path, real_checkpoint):
    from interp.data import MNISTDataModule
    from interp.models import MnistMLP
    from interp.runs import ALLOWED_TARGETS, build_from_run_config, load_run_config

    assert {
        "interp.models.MnistMLP",
        "interp.models.FaceResNet50",
        "interp.data.MNISTDataModule",
        "interp.models.MnistCNN",
    } <= ALLOWED_TARGETS
    config = _write_config(
        tmp_path / "config.yaml",
        f"""
model: {{_target_: interp.models.MnistMLP, hidden: 32, dropout: 0.2, lr: 0.001}}
data: {{_target_: interp.data.MNISTDataModule, root: {tmp_path}, batch_size: 7, download: false}}
trainer: {{_target_: os.system, command: whatever}}
experiment: mnist_mlp
""",
    )
    model_class, datamodule = build_from_run_config(load_run_config(config))
    assert model_class is MnistMLP
    assert isinstance(datamodule, MNISTDataModule) and datamodule.batch_size == 7
    assert model_class.load_from_checkpoint(real_checkpoint, map_location="cpu").hparams.hidden == 32
    from omegaconf import OmegaConf

    model_class, datamodule = build_from_run_config(OmegaConf.create({"model": {"_target_": "interp.models.MnistMLP"}}))
    assert model_class is MnistMLP and datamodule is None


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [
        ("model: {_target_: shutil.copyfile, src: SRC, dst: DST}\n", "model._target_ 'shutil.copyfile'"),
        ("model: {_target_: os.system, command: 'touch DST'}\n", "model._target_ 'os.system'"),
        (
            "model: {_target_: interp.models.MnistMLP, hidden: {_target_: os.system, command: 'touch DST'}}\n",
            "model.hidden._target_ 'os.system'",
        ),
        (
            "model: {_target_: interp.models.MnistMLP}\n"
            "data: {_target_: interp.data.MNISTDataModule, root: {_target_: shutil.copyfile, src: SRC, dst: DST}}\n",
            "data.root._target_ 'shutil.copyfile'",
        ),
        (
            "model: {_target_: interp.models.MnistMLP}\n"
            "data: {_target_: interp.data.MNISTDataModule, x: [1, {_target_: os.system, command: 'touch DST'}]}\n",
            r"data.x\[1\]._target_ 'os.system'",
        ),
        ("model: {_target_: interp.data.MNISTDataModule}\n", "model._target_ 'interp.data.MNISTDataModule'"),
    ],
)
def test_build_from_run_config_refuses_other_targets(tmp_path, yaml_text, named, no_instantiate):
    from interp.runs import build_from_run_config, load_run_config

    dst = tmp_path / "pwned"
    text = yaml_text.replace("SRC", __file__).replace("DST", str(dst))
    config = _write_config(tmp_path / "config.yaml", text)
    with pytest.raises(UnsafeConfigError, match=named) as exc:
        build_from_run_config(load_run_config(config))
    assert "refusing" in one_line(exc)
    assert not dst.exists() and not no_instantiate


def test_allowed_but_absent_class_is_a_clear_error(monkeypatch):
    import interp.models
    from interp.runs import build_from_run_config

    monkeypatch.delattr(interp.models, "MnistCNN", raising=False)
    with pytest.raises(InterpError, match="interp.models.MnistCNN is not available") as exc:
        build_from_run_config({"model": {"_target_": "interp.models.MnistCNN"}})
    one_line(exc)


def test_diff_hparams_names_what_differs():
    from omegaconf import OmegaConf

    from interp.runs import diff_hparams

    saved = {"hidden": 512, "dropout": 0.2, "lr": 0.001, "optimizer": "adam", "input_shape": (1, 28, 28)}
    wanted = OmegaConf.create(
        {
            "_target_": "interp.models.MnistMLP",
            "hidden": 256,
            "dropout": 0.2,
            "lr": 1e-3,
            "schedule": "cosine",
            "input_shape": [1, 28, 28],
        }
    )
    assert diff_hparams(saved, wanted) == [
        "hidden: checkpoint 512, config 256",
        "schedule: checkpoint (absent), config 'cosine'",
    ]
    assert diff_hparams({"lr": 1}, {"lr": 1.0}) == []
    assert diff_hparams({"units": [1, 2]}, {"units": [1, 3]}) == ["units: checkpoint [1, 2], config [1, 3]"]
