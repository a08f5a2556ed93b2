"""Class pictures of a classifier of faces (face-api's expressions): each class rendered by
optimization from noise, and each class accentuated from a photo ("make her surprised"), every
picture captioned with the probability the network gives it, beside the photo's own.

Both optimize the log-probability of the class (the log-softmax of the ``layer`` logits), which
stops pushing once the class wins, rather than the raw logit, which grows without bound:

* rendering: the decorrelated Fourier parameterization of :func:`interp.optvis.param.image` and the
  default transforms of :func:`interp.optvis.render`;
* accentuation: :func:`interp.optvis.accentuate.accentuate` from the face crop, its normalized
  pixels (the model's first layer) held close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from interp.errors import InterpError
from interp.optvis import Capture, frozen, model_device, render
from interp.optvis import objectives as obj
from interp.optvis.accentuate import accentuate
from interp.optvis.param import image as image_param
from interp.optvis.param import unit_seeds
from interp.records import ExpressionsRecord, save_record
from interp.report import Reporter, titled_column, titled_row, upscale
from interp.settings import Settings
from interp.steps.common import check_layer, model_example
from interp.steps.dream import Images, load_images

SHIPPED_FACE_BOX = (25, 75, 80, 80)
"""(top, left, height, width) of the face in the shipped portrait (256x256), a tight crop as
face-api's detector gives its classifiers."""

SHOWN = 224
"""Side in pixels of each picture in the summary."""


class ClassPictures(ExpressionsRecord):
    """What :func:`expressions` returns (CPU tensors): the :class:`~interp.records.ExpressionsRecord` that
    ``expressions.pt`` holds, with the class names.

    Row ``i`` of ``rendered`` and ``accentuated`` is class ``names[i]``.

    Args:
        names: the class names.
        face: the face crop, [1, 3, S, S].
        face_probs: the network's probabilities of every class for the face, [N].
        rendered: the renderings from noise, [N, 3, S, S].
        rendered_probs: the probabilities of every class for each rendering, [N, N] (the diagonal is the class asked
            for).
        accentuated: the accentuations of the face, [N, 3, S, S].
        accentuated_probs: the probabilities for each accentuation, [N, N].
    """

    def __init__(
        self,
        names: list[str],
        face: torch.Tensor,
        face_probs: torch.Tensor,
        rendered: torch.Tensor,
        rendered_probs: torch.Tensor,
        accentuated: torch.Tensor,
        accentuated_probs: torch.Tensor,
    ) -> None:
        super().__init__(face, face_probs, rendered, rendered_probs, accentuated, accentuated_probs)
        self.names = names


def log_probability(layer: str, classes: Sequence[int]) -> obj.Objective:
    """Row ``i``: the log-softmax of ``layer``'s logits at class ``classes[i]``.

    Args:
        layer: the layer of the logits.
        classes: one class per batch row.

    Returns:
        The objective.
    """
    index = torch.tensor([int(c) for c in classes])

    def fn(acts: obj.Acts) -> torch.Tensor:
        logits = acts[layer].flatten(1)
        rows = torch.arange(logits.shape[0], device=logits.device)
        return F.log_softmax(logits, dim=1)[rows, index.to(logits.device)]

    return obj.Objective(fn, [layer], f"log_softmax({layer})[{list(classes)}]")


def face_crop(photo: torch.Tensor, box: Sequence[int] | None, size: int) -> torch.Tensor:
    """The ``box`` of ``photo``, resized to ``size`` x ``size``.

    Args:
        photo: the photo, [3, H, W] in [0, 1].
        box: (top, left, height, width) in pixels; ``None``: the whole photo.
        size: the side of the crop.

    Returns:
        The crop, [1, 3, size, size] in [0, 1].

    Raises:
        InterpError: a box that does not have four entries or does not lie within the photo.
    """
    if box is not None:
        if len(box) != 4:
            raise InterpError(f"face_box={list(box)}: give [top, left, height, width] in pixels")
        top, left, height, width = (int(v) for v in box)
        h, w = photo.shape[-2:]
        if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
            raise InterpError(f"face_box={list(box)} does not lie within the {w}x{h} photo")
        photo = photo[:, top : top + height, left : left + width]
    return F.interpolate(photo[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(
        0, 1
    )


def probabilities(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """Softmax of ``layer``'s logits for ``images``.

    Args:
        model: the classifier (run frozen, in eval mode).
        layer: the layer of the logits.
        images: the images, [N, 3, H, W].

    Returns:
        The probabilities, [N, classes] on the CPU.
    """
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        logits = cap(images.to(model_device(model)))[layer].flatten(1)
    return torch.softmax(logits.float(), dim=1).cpu()


def _caption(name: str, p: float) -> str:
    return f"{name} {p:.2f}"


def _table(names: list[str], rows: list[tuple[str, torch.Tensor]]) -> str:
    lines = ["| picture | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, probs in rows:
        lines.append(f"| {label} | " + " | ".join(f"{float(p):.3f}" for p in probs) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class ExpressionSettings(Settings):
    """What decides the class pictures of :func:`expressions`.

    Attributes:
        face_box: (top, left, height, width) of the face in the photo as loaded; None: the face of
            the shipped portrait (:data:`SHIPPED_FACE_BOX`) for it, else the whole photo.
        steps: optimization steps of the renderings from noise (Adam on the Fourier parameterization, the default
            transforms).
        lr: the renderings' learning rate.
        decay_power: the renderings' Fourier spectrum decays as ``1 / f ** decay_power``.
        accentuate_steps: optimization steps of the accentuations of the face (no transforms).
        accentuate_lr: the accentuations' learning rate.
        reg_weight: the weight that holds the accentuations' first-layer values close to the face's.
        seed: seeds the renderings (one seed per class) and their transforms.
    """

    face_box: tuple[int, ...] | None = None
    steps: int = 256
    lr: float = 0.01
    decay_power: float = 1.5
    accentuate_steps: int = 96
    accentuate_lr: float = 0.003
    reg_weight: float = 100.0
    seed: int = 0

    def check(self) -> None:
        """Refuse a face box that is not four whole numbers, or steps below 1.

        Raises:
            SettingsError: a value that cannot work.
        """
        box = self.face_box
        if box is not None and (
            not isinstance(box, tuple) or len(box) != 4 or not all(isinstance(v, int) for v in box)
        ):
            self.fail(f"face_box must be (top, left, height, width) in pixels, got {box!r}")
        self.at_least("steps", 1)
        self.at_least("accentuate_steps", 1)
        for name in ("lr", "decay_power", "accentuate_lr", "reg_weight"):
            self.finite(name, 0.0)


def expressions(
    model: nn.Module,
    reporter: Reporter,
    layer: str = "fc",
    settings: ExpressionSettings | None = None,
    *,
    image: Images = None,
    step: int = 0,
    progress: bool = False,
) -> ClassPictures:
    """Render every class of the classifier ``layer`` from noise and accentuate it from a face.

    Args:
        model: a classifier of face crops whose ``layer`` outputs logits (names from
            ``model.class_names``, else the class numbers); its ``example_input_array`` gives the size.
        reporter: where the pictures, the table and the results go.
        layer: the layer of the logits.
        settings: the :class:`ExpressionSettings` (None: the defaults).
        image: the photo (None: the shipped portrait); only its first image is used.
        step: the global step everything is logged at.
        progress: show tqdm bars.

    Returns:
        The face, the renderings, the accentuations and their probabilities.

    Raises:
        InterpError: an unknown layer, a model without ``example_input_array``, class names that do not match the
            outputs, or a face box outside the photo.

    Logs ``interp/expressions/<layer>`` (the face and every rendering and accentuation, captioned
    with its class's probability), ``.../rendered/<name>`` and ``.../accentuated/<name>``, the
    table of all probabilities (``.../table``, TEXT tab) and ``expressions/<layer>/expressions.pt``.
    """
    chosen = settings or ExpressionSettings()
    face_box, seed = chosen.face_box, chosen.seed
    steps, lr, decay_power = chosen.steps, chosen.lr, chosen.decay_power
    accentuate_steps, accentuate_lr, reg_weight = chosen.accentuate_steps, chosen.accentuate_lr, chosen.reg_weight
    check_layer(model, layer)
    example = model_example(model)
    if example is None:
        raise InterpError(f"class pictures of {layer} need the input size: set the model's example_input_array")
    size = int(example.shape[-1])
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        n_classes = int(cap(example.to(model_device(model)))[layer].flatten(1).shape[1])
    names = [str(n) for n in getattr(model, "class_names", range(n_classes))]
    if len(names) != n_classes:
        raise InterpError(f"{layer} has {n_classes} outputs but the model names {len(names)} classes")
    classes = list(range(n_classes))
    box = face_box if face_box is not None else (SHIPPED_FACE_BOX if image is None else None)
    face = face_crop(load_images(image, None)[0], box, size)
    face_probs = probabilities(model, layer, face)[0]
    target = log_probability(layer, classes)

    param = image_param((n_classes, 3, size, size), decay_power=decay_power, seed=unit_seeds(seed, classes))
    rendered = render(model, target, param=param, steps=steps, lr=lr, seed=seed, progress=progress).image
    rendered_probs = probabilities(model, layer, rendered)
    acc = accentuate(
        model,
        target,
        face.expand(n_classes, -1, -1, -1),
        steps=accentuate_steps,
        lr=accentuate_lr,
        reg_weight=reg_weight,
        seed=seed,
        progress=progress,
    )
    accentuated = acc.image
    accentuated_probs = probabilities(model, layer, accentuated)

    best = int(face_probs.argmax())
    face_caption = f"face: {_caption(names[best], float(face_probs[best]))}"
    for kind, pictures, probs, what in (
        ("rendered", rendered, rendered_probs, "rendered from noise"),
        ("accentuated", accentuated, accentuated_probs, "accentuated from the face"),
    ):
        for c, name in enumerate(names):
            p, p_face = float(probs[c, c]), float(face_probs[c])
            reporter.image(
                f"expressions/{layer}/{kind}/{name}",
                upscale(pictures[c], SHOWN),
                step,
                description=f"{name} {what}: p({name}) = {p:.3f} (the face: {p_face:.3f}).",
            )
    shown_face = upscale(face[0], SHOWN)
    rows = [
        titled_row(
            [shown_face, *upscale(pictures, SHOWN)],
            [face_caption, *(_caption(n, float(probs[c, c])) for c, n in enumerate(names))],
        )
        for pictures, probs in ((rendered, rendered_probs), (accentuated, accentuated_probs))
    ]
    face_line = ", ".join(_caption(n, float(face_probs[c])) for c, n in enumerate(names))
    summary = titled_column(
        rows,
        [
            f"Each class rendered from noise, with its probability (the face: {face_line})",
            "Each class accentuated from the face, with its probability",
        ],
    )
    reporter.image(
        f"expressions/{layer}",
        summary,
        step,
        description=f"Classes of {layer} rendered from noise and accentuated from the face, each captioned with the "
        f"probability the network gives it; the face itself: {face_line}.",
    )
    table_rows = [("face", face_probs)]
    table_rows += [(f"rendered {n}", rendered_probs[c]) for c, n in enumerate(names)]
    table_rows += [(f"accentuated {n}", accentuated_probs[c]) for c, n in enumerate(names)]
    reporter.text(f"expressions/{layer}/table", _table(names, table_rows), step)
    result = ClassPictures(names, face, face_probs, rendered, rendered_probs, accentuated, accentuated_probs)
    save_record(reporter, layer, result)
    return result
