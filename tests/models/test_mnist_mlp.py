"""The project's MLP (interp.models.MnistMLP): layer names and shapes, the built-in normalization,
checkpoints that reload to identical predictions, and one epoch on real MNIST."""

import pytest
import torch

from interp.data import MNISTDataModule
from interp.models import MnistMLP


def test_model_shape_names_and_normalization():
    model = MnistMLP().eval()
    modules = dict(model.named_modules())
    assert isinstance(modules["dense_1"], torch.nn.Linear) and modules["dense_1"].out_features == 512
    assert modules["dense_2"].in_features == 512 and modules["dense_3"].out_features == 10
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    seen = {}
    modules["dense_1"].register_forward_pre_hook(lambda m, inp: seen.setdefault("in", inp[0]))
    model(x)
    torch.testing.assert_close(seen["in"], ((x - 0.1307) / 0.3081).flatten(1))


def test_checkpoint_reload_gives_identical_predictions(tmp_path, tiny_mnist):
    import lightning.pytorch as L

    root, _ = tiny_mnist
    dm = MNISTDataModule(root=str(root), batch_size=32, val_size=50, download=False)
    model = MnistMLP()
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(model, dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    again = MnistMLP.load_from_checkpoint(path).eval()
    x = torch.rand(16, 1, 28, 28)
    assert torch.equal(model.eval()(x), again(x))
    assert again.hparams.hidden == 512


@pytest.mark.slow
def test_one_epoch_on_real_mnist_reaches_95_percent(mnist_root):
    import lightning.pytorch as L

    L.seed_everything(0, verbose=False)
    dm = MNISTDataModule(root=str(mnist_root), download=False)
    model = MnistMLP()
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, dm)
    acc = trainer.test(model, dm, verbose=False)[0]["test/acc"]
    assert len(dm.test_set) == 10000 and len(dm.train_set) == 55000 and len(dm.val_set) == 5000
    assert acc >= 0.95, acc
