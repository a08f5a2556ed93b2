"""Run folders: creating them, finding ``latest``, reading checkpoints and rebuilding a run safely.

* :func:`make_run_dir` creates a new run folder atomically (never reuses one).
* :func:`find_checkpoint` resolves ``latest`` or a path to a checkpoint file.
* :func:`load_checkpoint_file` reads a checkpoint with ``weights_only=True`` and checks that it
  is one of this project's.
* :func:`build_from_run_config` rebuilds the model class and datamodule of a run from its
  ``config.yaml``, refusing any ``_target_`` outside :data:`ALLOWED_TARGETS`.
* :func:`diff_hparams` names the hyperparameters on which a checkpoint and a config disagree.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from interp.errors import CheckpointError, InterpError, UnsafeConfigError

MAX_RUN_DIR_SUFFIX = 10_000

MODEL_TARGETS = frozenset(
    {
        "interp.models.MnistMLP",
        "interp.models.MnistCNN",
        "interp.models.FaceResNet50",
    }
)
"""The model classes a run's ``config.yaml`` may name."""

DATA_TARGETS = frozenset(
    {
        "interp.data.MNISTDataModule",
    }
)
"""The datamodule classes a run's ``config.yaml`` may name."""

ALLOWED_TARGETS = MODEL_TARGETS | DATA_TARGETS
"""Every ``_target_`` that :func:`build_from_run_config` accepts, at any depth."""

CHECKPOINT_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")
"""Keys every Lightning checkpoint of this project's models holds."""


# --- run folders --------------------------------------------------------------------------------


def make_run_dir(parent: str | os.PathLike, stamp: str) -> Path:
    """Create and return a new, empty run folder ``parent/stamp`` (``stamp-1``, ``stamp-2``... when
    taken).

    Creation is atomic (an exclusive ``os.mkdir``), so processes or threads asking for the same
    stamp at the same moment each get their own folder; an existing folder is never reused.
    ``parent`` is created when missing.

    Raises:
        InterpError: ``stamp`` is not a plain folder name, ``parent`` cannot be created or written,
            or every suffix up to :data:`MAX_RUN_DIR_SUFFIX` is taken.
    """
    if not stamp or stamp in (".", "..") or "/" in stamp or os.sep in stamp:
        raise InterpError(f"run folder name must be a plain name, got {stamp!r}")
    parent = Path(parent).expanduser()
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InterpError(f"cannot create the runs folder {parent}: {e.strerror or e}") from None
    for n in range(MAX_RUN_DIR_SUFFIX + 1):
        candidate = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        except OSError as e:
            raise InterpError(f"cannot create the run folder {candidate}: {e.strerror or e}") from None
        return candidate
    raise InterpError(f"{parent}: {stamp} and its suffixes up to -{MAX_RUN_DIR_SUFFIX} are all taken")


def find_checkpoint(
    spec: str,
    runs_root: str | Path = "runs",
    exclude: str | Path | None = None,
    experiment: str | None = None,
) -> str:
    """Resolve ``latest`` or a checkpoint path to the path of an existing checkpoint file.

    ``latest`` is the newest ``last*.ckpt`` in a ``checkpoints/`` folder under ``runs_root``, or
    only under ``runs_root/experiment/`` when ``experiment`` is given (so resuming one experiment
    never picks another's checkpoint). Checkpoints inside ``exclude`` (the current run) are
    skipped.

    Raises:
        InterpError: the path does not exist or is a folder, or ``latest`` finds nothing.
    """
    if spec != "latest":
        path = Path(spec).expanduser()
        if path.is_dir():
            raise InterpError(
                f"checkpoint {path} is a folder: give the .ckpt file (such as {path / 'checkpoints' / 'last.ckpt'})"
            )
        if not path.is_file():
            raise InterpError(f"checkpoint {path} does not exist")
        return str(path)
    root = Path(runs_root)
    if experiment:
        if "/" in experiment or experiment in (".", ".."):
            raise InterpError(f"experiment must be a plain folder name, got {experiment!r}")
        root = root / experiment
    candidates = [p for p in root.glob("**/checkpoints/last*.ckpt") if p.is_file()]
    if exclude is not None:
        ex = Path(exclude).resolve()
        candidates = [p for p in candidates if ex not in p.resolve().parents]
    if not candidates:
        where = f"experiment {experiment!r} (under {root}/)" if experiment else f"{root}/"
        raise InterpError(f"no checkpoint found for {where} (looked for */checkpoints/last.ckpt); train first")
    return str(max(candidates, key=lambda p: p.stat().st_mtime))


# --- checkpoints --------------------------------------------------------------------------------

_ADVICE = re.compile(r"weights_only|add_safe_globals|safe_globals|trusted source|torch\.serialization", re.I)


def _short_reason(exc: BaseException) -> str:
    """One short line from a torch.load error, without torch's advice to turn safety off."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a Python object ({found.group(1)}), not only tensors and plain values"
    if "WeightsUnpickler error:" in text:  # the detail follows torch's advice
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _ADVICE.search(line)]
    detail = lines[0].split(". ")[0].rstrip(".") if lines else ""
    if not isinstance(exc, (RuntimeError, pickle.UnpicklingError)) or not detail:
        detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    if len(detail) > 120:
        detail = detail[:117] + "..."
    return f"corrupt, truncated or not a torch file: {detail}"


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a Lightning checkpoint of this project safely and return its dict.

    The file is opened with ``torch.load(path, map_location="cpu", weights_only=True)``: tensors
    and plain values only, no code runs. The result must be a dict holding
    :data:`CHECKPOINT_KEYS` with ``state_dict`` a dict of tensors.

    Raises:
        CheckpointError: ``not a checkpoint of this project: <path> (<reason>)`` for a missing,
            unreadable, empty, truncated or corrupt file, a pickle holding Python objects, or a
            torch file of another kind. The message never suggests ``weights_only=False``.
    """
    import torch

    path = Path(path).expanduser()

    def fail(reason: str) -> CheckpointError:
        return CheckpointError(f"not a checkpoint of this project: {path} ({reason})")

    if path.is_dir():
        raise fail("a folder, not a file")
    if not path.exists():
        raise fail("no such file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise fail(f"cannot be read: {e.strerror or e}") from None
    if size == 0:
        raise fail("the file is empty")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before refusing a foreign pickle: the error says it.
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as e:
        raise fail(f"cannot be read: {e.strerror or e}") from None
    except Exception as e:  # corrupt files raise many types (RuntimeError, EOFError, UnpicklingError...)
        raise fail(_short_reason(e)) from None
    if not isinstance(ckpt, dict):
        raise fail(f"it holds a {type(ckpt).__name__}, not a checkpoint dict")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise fail(f"no {', '.join(missing)}: not a Lightning checkpoint of this project's models")
    state = ckpt["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise fail("its state_dict is not a dict of tensors")
    if not isinstance(ckpt["hyper_parameters"], Mapping):
        raise fail("its hyper_parameters are not a dict")
    return ckpt


# --- rebuilding a run from its config.yaml ------------------------------------------------------


def _targets(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every (location, ``_target_`` value) in a nested dict/list, depth first."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "_target_":
                yield where, value
            else:
                yield from _targets(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


def _check_targets(node: Any, where: str, top: frozenset[str]) -> None:
    """Refuse a node whose own ``_target_`` is not in ``top`` or that nests any target outside
    :data:`ALLOWED_TARGETS`."""
    if not isinstance(node, Mapping):
        raise UnsafeConfigError(f"config.yaml: {where} must be a mapping with a _target_, got {type(node).__name__}")
    target = node.get("_target_")
    if not isinstance(target, str) or target not in top:
        raise UnsafeConfigError(
            f"config.yaml: {where}._target_ {target!r} is not one of this project's classes "
            f"({', '.join(sorted(top))}); refusing to build it"
        )
    for location, value in _targets(node, where):
        if not isinstance(value, str) or value not in ALLOWED_TARGETS:
            raise UnsafeConfigError(
                f"config.yaml: {location}._target_ {value!r} is not one of this project's classes; refusing to build it"
            )


def _import_target(target: str) -> Any:
    """The class named by an allow-listed target."""
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise InterpError(f"{target} is not available in this version of interp") from None


def _plain(run_cfg: Any) -> dict[str, Any]:
    """A run config (DictConfig or mapping) as plain, resolved Python containers."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(run_cfg, DictConfig):
        try:
            plain = OmegaConf.to_container(run_cfg, resolve=True)
        except Exception as e:  # interpolation errors come in several types
            raise InterpError(f"config.yaml cannot be resolved: {str(e).splitlines()[0]}") from None
    else:
        plain = run_cfg
    if not isinstance(plain, Mapping):
        raise InterpError(f"config.yaml must be a mapping, got {type(plain).__name__}")
    return dict(plain)


def load_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run's ``config.yaml`` as a plain, resolved dict (nothing is built).

    Raises:
        InterpError: the file is missing or is not valid YAML holding a mapping.
    """
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise InterpError(f"{path} not found: the config.yaml that `interp train` writes in the run folder")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # YAML errors, unreadable files
        raise InterpError(f"{path} is not a readable config: {str(e).splitlines()[0]}") from None
    return _plain(cfg)


def build_from_run_config(run_cfg: Any) -> tuple[type, Any]:
    """``(model class, datamodule or None)`` for a run's config, built only from allow-listed classes.

    ``run_cfg`` is the run's ``config.yaml`` (a DictConfig or a plain mapping). The ``model``
    node's ``_target_`` must be in :data:`MODEL_TARGETS`, the ``data`` node's (when present and
    not null) in :data:`DATA_TARGETS`, and every ``_target_`` nested in either must be in
    :data:`ALLOWED_TARGETS`; everything is checked before anything is imported or instantiated.
    The model is not built: the caller loads it with ``model_class.load_from_checkpoint``.

    Raises:
        UnsafeConfigError: a ``_target_`` outside the allow-list (the message names it and where).
        InterpError: no ``model`` node, a config that does not resolve, or a datamodule the
            config's arguments do not fit.
    """
    cfg = _plain(run_cfg)
    if "model" not in cfg or cfg["model"] is None:
        raise InterpError("config.yaml has no model node: not the config of an `interp train` run")
    model_node = cfg["model"]
    data_node = cfg.get("data")
    _check_targets(model_node, "model", MODEL_TARGETS)
    if data_node is not None:
        _check_targets(data_node, "data", DATA_TARGETS)
    model_class = _import_target(model_node["_target_"])
    datamodule = None
    if data_node is not None:
        from hydra.utils import instantiate

        data_class = _import_target(data_node["_target_"])  # a clear error when a class is missing
        try:
            datamodule = instantiate(data_node)
        except Exception as e:  # Hydra wraps argument errors in InstantiationException
            raise InterpError(f"config.yaml: data cannot be built: {str(e).splitlines()[0]}") from None
        if not isinstance(datamodule, data_class):  # `_partial_: true`, say
            raise InterpError(f"config.yaml: data did not build a {data_node['_target_']}")
    return model_class, datamodule


# --- hyperparameters ----------------------------------------------------------------------------


def _container(value: Any) -> Any:
    """OmegaConf containers as plain ones, tuples as lists (so a config's list equals a saved tuple)."""
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    else:
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: _container(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_container(v) for v in value]
    return value


def diff_hparams(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The hyperparameters a config (``wanted``) sets to other values than a checkpoint (``saved``).

    One line per name, sorted: ``"hidden: checkpoint 512, config 256"``. Only the names the
    config sets are compared (a checkpoint also records defaults the config leaves out, such as
    ``input_shape``); a name the checkpoint lacks reads ``checkpoint (absent)``. Keys that start
    with ``_`` (Hydra's ``_target_`` and the like) are ignored. Numbers compare by value (``1``
    equals ``1.0``), tuples equal lists, OmegaConf containers compare as plain dicts and lists.
    An empty list means the config fits the checkpoint.

    >>> diff_hparams({"hidden": 512, "lr": 0.001, "num_classes": 10},
    ...              {"_target_": "interp.models.MnistMLP", "hidden": 256, "lr": 1e-3})
    ['hidden: checkpoint 512, config 256']
    """
    saved = _container(saved) or {}
    wanted = _container(wanted) or {}
    lines = []
    for name in sorted(wanted, key=str):
        if str(name).startswith("_"):
            continue
        if name not in saved:
            lines.append(f"{name}: checkpoint (absent), config {wanted[name]!r}")
        elif saved[name] != wanted[name]:
            lines.append(f"{name}: checkpoint {saved[name]!r}, config {wanted[name]!r}")
    return lines
