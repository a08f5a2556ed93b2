"""``EmbeddingProjector``: a layer's activations in TensorBoard's projector, and a t-SNE picture."""

from __future__ import annotations

import logging

import torch

from interp.callbacks.base import InterpretationCallback, sequential_loader
from interp.optvis import Capture, frozen, model_device
from interp.report import pil_to_tensor

log = logging.getLogger("interp")


def layer_activations(model, layer: str, dataset, n: int, batch_size: int = 1024):
    """(activations [n, D] flattened, images [n, C, H, W], labels [n] or None) of the first n items."""
    feats, images, labels = [], [], []
    device = model_device(model)
    with frozen(model), Capture(model, [layer]) as cap, torch.inference_mode():
        for batch in sequential_loader(dataset, batch_size, 0, min(n, len(dataset))):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            feats.append(cap(x.to(device))[layer].flatten(1).float().cpu())
            images.append(x.cpu())
            if isinstance(batch, (tuple, list)) and len(batch) > 1:
                labels.append(torch.as_tensor(batch[1]).cpu())
    return torch.cat(feats), torch.cat(images), (torch.cat(labels) if labels else None)


def tsne_picture(features: torch.Tensor, labels: torch.Tensor | None, title: str, seed: int = 0) -> torch.Tensor | None:
    """A 2-D t-SNE scatter coloured by label as a [3, H, W] image (needs scikit-learn and
    matplotlib: ``pip install interp[tsne]``); None when they are missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.manifold import TSNE
    except ImportError:
        log.warning("interp: t-SNE picture skipped: install scikit-learn and matplotlib (pip install 'interp[tsne]')")
        return None
    import io

    from PIL import Image

    xy = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(features.numpy())
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    colors = labels.numpy() if labels is not None else None
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=colors, cmap="tab10", s=4)
    if labels is not None:
        ax.legend(*scatter.legend_elements(), loc="best", fontsize=7, title="label")
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return pil_to_tensor(Image.open(io.BytesIO(buf.getvalue())))


class EmbeddingProjector(InterpretationCallback):
    """The activations of ``layer`` for ``n`` examples of the ``split`` set in TensorBoard's
    projector (tag ``interp/projector/<layer>``: PCA, t-SNE and UMAP views there), with the
    images as sprite thumbnails and the labels as metadata; and a static 2-D t-SNE scatter
    coloured by label, ``interp/tsne/<layer>`` (when scikit-learn and matplotlib are installed)."""

    kind = "projector"

    def __init__(self, layer: str, n: int = 2000, split: str = "test", tsne: bool = True, seed: int = 0, **kwargs):
        super().__init__(layer, None, **kwargs)
        self.n, self.split, self.tsne, self.seed = n, split, tsne, seed
        self.features = None

    def interpret(self, trainer, pl_module, reporter, step):
        dataset = self.data(trainer, self.split)
        feats, images, labels = layer_activations(pl_module, self.layer, dataset, self.n)
        self.features = feats
        metadata = labels.tolist() if labels is not None else None
        reporter.embedding(f"interp/projector/{self.layer}", feats, metadata=metadata, label_img=images.float(), step=step)
        if self.tsne and trainer.is_global_zero:
            picture = tsne_picture(feats, labels, f"t-SNE of {self.layer} ({len(feats)} {self.split} examples)", self.seed)
            if picture is not None:
                reporter.image(f"interp/tsne/{self.layer}", picture, step)
