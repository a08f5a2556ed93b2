"""A learned image prior: a small variational autoencoder, trained once per data set and cached.

Its decoder maps a latent code ``z`` [B, latent_dim] to images in [0, 1]; optimizing ``z``
instead of pixels (:class:`interp.optvis.latent.LatentParam`) keeps a feature visualization
on the manifold of the training images::

    from interp.models.prior import train_prior
    from interp.optvis import render_units
    from interp.optvis.latent import LatentParam
    prior = train_prior(datamodule, seed=0)   # MNIST: ~25 s once, then loads from the cache
    view = LatentParam(prior.decoder, batch=16, latent_dim=prior.latent_dim, seed=0)
    result = render_units(model, "dense_1", range(16), param=view)

:func:`train_prior` trains with a Lightning ``Trainer`` and caches the weights under ``cache_dir``
in a file named by a hash of the data (its size, shape, dtype and the bytes of 2,048 of its
images) and of the settings, so a second call with the same data and settings loads the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from interp.settings import Settings

__all__ = [
    "ImageDecoder",
    "ImagePrior",
    "PriorSettings",
    "train_prior",
    "training_images",
    "data_fingerprint",
    "default_cache_dir",
]

CACHE_ENV = "INTERP_CACHE_DIR"
_FORMAT = 2  # bump when the architecture or training changes: old cache files then stop matching


def default_cache_dir() -> Path:
    """Where trained priors are kept.

    Returns:
        ``$INTERP_CACHE_DIR/priors`` if the variable is set, else ``~/.cache/interp/priors``.
    """
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "interp") / "priors"


class ImageDecoder(nn.Module):
    """``z [B, latent_dim] -> images [B, C, H, W]`` in [0, 1].

    A plain ``nn.Module``: an MLP with two hidden ReLU layers and a sigmoid. ``logits(z)`` gives the values before the
    sigmoid.

    Args:
        latent_dim: size of the code.
        hidden: width of the hidden layers.
        image_shape: (C, H, W) of the images.
    """

    def __init__(self, latent_dim: int, hidden: int, image_shape: Sequence[int]):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.net = nn.Sequential(
            nn.Linear(self.latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, math.prod(self.image_shape)),
        )

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoded values before the sigmoid.

        Args:
            z: codes, [B, latent_dim].

        Returns:
            The logits, [B, C, H, W].
        """
        return self.net(z).reshape(z.shape[0], *self.image_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))


class ImagePrior(L.LightningModule):
    """A variational autoencoder for small images in [0, 1] (MNIST-sized by default).

    Encoder: flatten, ``hidden`` ReLU units, then mean and log-variance of ``latent_dim``
    Gaussians. Decoder: :class:`ImageDecoder` (two hidden layers: sample quality lives there).
    Loss per image: binary cross-entropy of the reconstruction summed over pixels plus ``beta``
    times the KL divergence to N(0, I).

    Args:
        latent_dim: size of the latent code.
        hidden: width of the hidden layers.
        image_shape: (C, H, W) of the images.
        lr: Adam's peak learning rate (one-cycle schedule).
        beta: weight of the KL term. Below 1 (a beta-VAE with beta < 1) the decoder draws sharper
            digits, whose strokes excite units as much as real ones do; the default 0.5 was
            chosen on ``dense_1`` units 64-191 of the MNIST MLP (benchmarks/legibility.py).

    >>> prior = ImagePrior(latent_dim=8, hidden=32, image_shape=(1, 12, 12))
    >>> prior.decoder(torch.zeros(3, 8)).shape
    torch.Size([3, 1, 12, 12])
    """

    def __init__(
        self,
        latent_dim: int = 16,
        hidden: int = 256,
        image_shape: Sequence[int] = (1, 28, 28),
        lr: float = 5e-3,
        beta: float = 0.5,
    ):
        super().__init__()
        image_shape = tuple(int(s) for s in image_shape)
        self.save_hyperparameters(
            {
                "latent_dim": int(latent_dim),
                "hidden": int(hidden),
                "image_shape": list(image_shape),
                "lr": float(lr),
                "beta": float(beta),
            }
        )
        self.latent_dim = int(latent_dim)
        self.image_shape = image_shape
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(image_shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * self.latent_dim),
        )
        self.decoder = ImageDecoder(self.latent_dim, hidden, image_shape)
        self.example_input_array = torch.zeros(1, *image_shape)
        # Set by train_prior: the number of optimizer steps, where the weights live and whether they
        # came from there.
        self.total_steps: int | None = None
        self.cache_path: Path | None = None
        self.from_cache = False
        self.fit_seconds: float | None = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x) (the log-variance clamped to [-10, 10]).

        Args:
            x: images in [0, 1], [B, C, H, W].

        Returns:
            ``(mean, log_variance)``, each [B, latent_dim].
        """
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x`` through the mean code."""
        return self.decoder(self.encode(x)[0])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images decoded from codes.

        Args:
            z: codes, [B, latent_dim].

        Returns:
            The images in [0, 1], [B, C, H, W].
        """
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images decoded from z ~ N(0, I).

        Args:
            n: number of images.
            generator: draws the codes (on the CPU); ``None``: the global stream.

        Returns:
            The images in [0, 1], [n, C, H, W], on the model's device.
        """
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return self.decoder(z)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The VAE's loss: mean over the batch of the summed binary cross-entropy plus ``beta`` times the KL term.

        The code is drawn with the reparameterization trick (from the global random stream).

        Args:
            x: images in [0, 1], [B, C, H, W].

        Returns:
            The scalar loss.
        """
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = F.binary_cross_entropy_with_logits(self.decoder.logits(z), x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return (recon + self.hparams.beta * kl).mean()

    @staticmethod
    def _images(batch) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def training_step(self, batch, batch_idx):
        loss = self.loss(self._images(batch))
        if self._trainer is not None and batch_idx % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        """Adam with a one-cycle schedule (warm-up over the first 15% of the steps to ``lr``, then
        cosine annealing): in a few epochs it reconstructs as well as twice as many at a fixed
        rate."""
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        total = self.total_steps or int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=total, pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class _Batches(Dataset):
    """Images held as one tensor; a list of indices (from a BatchSampler) returns one slice."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[torch.as_tensor(index, dtype=torch.long)]


def training_images(data) -> torch.Tensor:
    """The training images of ``data`` as one tensor [N, C, H, W] (uint8 or float in [0, 1]).

    ``data`` is a tensor, a ``Dataset`` of images or ``(image, ...)`` items, a ``DataLoader``, or a
    LightningDataModule (its ``train_set`` when it has one, else its training loader's data set).

    Args:
        data: the data, as above (a 3-D tensor gets a channel axis).

    Returns:
        The images.

    Raises:
        ValueError: no images, or images that are not [N, C, H, W].
    """
    if isinstance(data, torch.Tensor):
        images = data
    else:
        dataset = data
        if hasattr(data, "train_dataloader") and hasattr(data, "setup"):
            if hasattr(data, "prepare_data"):
                data.prepare_data()
            data.setup("fit")
            dataset = getattr(data, "train_set", None) or data.train_dataloader().dataset
        elif isinstance(data, DataLoader):
            dataset = data.dataset
        images = _dataset_images(dataset)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"the prior needs images [N, C, H, W], got {tuple(images.shape)}")
    return images


def _dataset_images(dataset) -> torch.Tensor:
    held = getattr(dataset, "images", None)
    if isinstance(held, torch.Tensor):
        return held
    inner = getattr(dataset, "dataset", None)  # torch.utils.data.Subset
    indices = getattr(dataset, "indices", None)
    if inner is not None and indices is not None and isinstance(getattr(inner, "images", None), torch.Tensor):
        return inner.images[torch.as_tensor(indices, dtype=torch.long)]
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([item[0] if isinstance(item, (tuple, list)) else item for item in items])


def data_fingerprint(images: torch.Tensor, n: int = 1024) -> str:
    """SHA-256 of the size, shape and dtype of ``images`` and of the bytes of some of them.

    The first ``n`` images and ``n`` more spread evenly over the rest.

    Args:
        images: the images, [N, ...].
        n: how many images of each part to hash.

    Returns:
        The hexadecimal digest.
    """
    h = hashlib.sha256()
    h.update(f"{tuple(images.shape)}|{images.dtype}".encode())
    count = images.shape[0]
    step = max(1, count // n)
    for part in (images[:n], images[::step][:n]):
        h.update(part.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class PriorSettings(Settings):
    """The learned prior's VAE and its training (:func:`train_prior`); every one is part of the cache file's name.

    Attributes:
        seed: seeds the initial weights, the shuffling and the VAE's noise; the same seed, data and
            settings give the same weights (on the same kind of device).
        max_epochs: passes over the data. The default 5 epochs of MNIST's 55,000 digits (latent 16,
            hidden 256, batch 256) took 25 s on 2 cores (README).
        latent_dim: size of the code.
        hidden: width of the decoder's and the encoder's hidden layers.
        lr: Adam's learning rate.
        beta: weight of the KL term (a beta-VAE).
        batch_size: images per optimizer step.
    """

    seed: int = 0
    max_epochs: int = 5
    latent_dim: int = 16
    hidden: int = 256
    lr: float = 5e-3
    beta: float = 0.5
    batch_size: int = 256

    def check(self) -> None:
        """Refuse sizes and counts below 1 and a negative or infinite ``lr`` or ``beta``.

        Raises:
            SettingsError: a value that cannot work.
        """
        for name in ("max_epochs", "latent_dim", "hidden", "batch_size"):
            self.at_least(name, 1)
        self.finite("lr", 0.0)
        self.finite("beta", 0.0)


def train_prior(
    data,
    settings: PriorSettings | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    accelerator: str = "cpu",
    use_cache: bool = True,
    **changes: Any,
) -> ImagePrior:
    """Train an :class:`ImagePrior` on the training images of ``data``, or load it from the cache.

    Args:
        data: a LightningDataModule (its ``train_set``), a Dataset, a DataLoader or a tensor
            [N, C, H, W] of images in [0, 1] (uint8 allowed); see :func:`training_images`.
        settings: the :class:`PriorSettings` (None: the defaults).
        cache_dir: where the weights are kept (default :func:`default_cache_dir`); the file is
            ``prior-<hash>.pt`` with the hash of the data's fingerprint and of every setting.
        accelerator: Lightning's accelerator (``"cpu"`` by default: the model is tiny).
        use_cache: ``False`` trains and overwrites the cache file.
        changes: settings by name, over ``settings`` (``seed=1``, ``max_epochs=3``).

    Returns:
        The prior in eval mode, with ``cache_path``, ``from_cache`` and ``fit_seconds`` set.

    Raises:
        ValueError: ``data`` holds no images [N, C, H, W].
        SettingsError: a name that is not a setting, or a value that cannot work.
    """
    s = PriorSettings.build(settings, "train_prior", **changes)
    seed, max_epochs, batch_size = s.seed, s.max_epochs, s.batch_size
    latent_dim, hidden, lr, beta = s.latent_dim, s.hidden, s.lr, s.beta
    images = training_images(data)
    config = {
        "format": _FORMAT,
        "seed": int(seed),
        "max_epochs": int(max_epochs),
        "latent_dim": int(latent_dim),
        "hidden": int(hidden),
        "lr": float(lr),
        "beta": float(beta),
        "batch_size": int(batch_size),
        "image_shape": list(images.shape[1:]),
    }
    key = hashlib.sha256((data_fingerprint(images) + json.dumps(config, sort_keys=True)).encode()).hexdigest()[:20]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache / f"prior-{key}.pt"

    def build() -> ImagePrior:
        return ImagePrior(latent_dim=latent_dim, hidden=hidden, image_shape=tuple(images.shape[1:]), lr=lr, beta=beta)

    if use_cache and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        prior = build()
        prior.load_state_dict(saved["state_dict"])
        prior.eval()
        prior.cache_path, prior.from_cache, prior.fit_seconds = path, True, saved.get("fit_seconds")
        return prior

    start = time.perf_counter()
    cuda = [torch.cuda.current_device()] if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        prior = build()
        dataset = _Batches(images)
        sampler = BatchSampler(
            RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)),
            batch_size=batch_size,
            drop_last=False,
        )
        loader = DataLoader(dataset, sampler=sampler, batch_size=None)
        trainer = L.Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        prior.total_steps = max_epochs * len(sampler)
        trainer.fit(prior, train_dataloaders=loader)
    prior = prior.cpu().eval()
    fit_seconds = time.perf_counter() - start
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": prior.state_dict(), "config": config, "fit_seconds": fit_seconds}, tmp)
    os.replace(tmp, path)
    prior.cache_path, prior.from_cache, prior.fit_seconds = path, False, fit_seconds
    return prior
