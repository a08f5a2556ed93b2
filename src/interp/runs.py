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

import contextlib
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


_CREATED: dict[Path, int] = {}
"""Every folder this process created for a run: absolute path -> a descriptor open on it. The open
descriptor keeps the folder's inode from being reused, so a folder removed and made again by
someone else never passes for this one."""


def _remember(path: Path) -> None:
    _CREATED[path.resolve()] = os.open(path, os.O_RDONLY)


def created_here(path: str | os.PathLike) -> bool:
    """Whether this process created the folder ``path`` (with :func:`make_run_dir`) and it is still
    the same folder (not removed and made again by someone else)."""
    p = Path(path).resolve()
    fd = _CREATED.get(p)
    if fd is None:
        return False
    try:
        st, ours = os.stat(p), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino)


def _make_parents(parent: Path) -> None:
    """Create ``parent`` and its missing ancestors one by one, remembering each one made here."""
    missing = []
    for p in (parent, *parent.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            os.mkdir(p)
        except FileExistsError:  # another run made it at the same moment: not ours to remove
            if not p.is_dir():
                raise
            continue
        _remember(p)


def make_run_dir(parent: str | os.PathLike, stamp: str) -> Path:
    """Create and return a new, empty run folder ``parent/stamp`` (``stamp-1``, ``stamp-2``... when
    taken).

    Creation is atomic (an exclusive ``os.mkdir``), so processes or threads asking for the same
    stamp at the same moment each get their own folder; an existing folder is never reused.
    ``parent`` is created when missing. Every folder made is remembered (:func:`created_here`), so
    that clean-up after a failure removes only what this process made.

    Raises:
        InterpError: ``stamp`` is not a plain folder name, ``parent`` cannot be created or written,
            or every suffix up to :data:`MAX_RUN_DIR_SUFFIX` is taken.
    """
    if not stamp or stamp in (".", "..") or "/" in stamp or os.sep in stamp:
        raise InterpError(f"run folder name must be a plain name, got {stamp!r}")
    parent = Path(parent).expanduser()
    try:
        _make_parents(parent)
    except OSError as e:
        raise InterpError(f"cannot create the runs folder {parent}: {e.strerror or e}") from None
    if not parent.is_dir():
        raise InterpError(f"cannot create the runs folder {parent}: a file of that name is in the way")
    for n in range(MAX_RUN_DIR_SUFFIX + 1):
        candidate = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        except OSError as e:
            raise InterpError(f"cannot create the run folder {candidate}: {e.strerror or e}") from None
        _remember(candidate)
        return candidate
    raise InterpError(f"{parent}: {stamp} and its suffixes up to -{MAX_RUN_DIR_SUFFIX} are all taken")


def _records(path: Path, limit: int = 1 << 16) -> int:
    """How many records a TensorBoard events file holds (TFRecord framing: an 8-byte length, a
    4-byte checksum, the data, a 4-byte checksum), counting no further than ``limit`` bytes; 2 for a
    file that is larger or does not parse (it is then treated as holding summaries)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return 2
    if len(data) > limit:
        return 2
    count, offset = 0, 0
    while offset < len(data):
        if offset + 12 > len(data):
            return 2
        length = int.from_bytes(data[offset : offset + 8], "little")
        offset += 12 + length + 4
        count += 1
    return count if offset == len(data) else 2


BOOKKEEPING = frozenset({"config.yaml", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"})
"""Files a run writes before it has any result (besides Hydra's ``<job>.log`` and an events file
holding only its header, at the top)."""


def remove_failed_run(run_dir: str | os.PathLike | None) -> bool:
    """Remove the folder of a run that failed before it produced anything, and return whether it did.

    Only a folder this process created (:func:`created_here`) is touched, and only while it holds
    nothing but :data:`BOOKKEEPING` files and Hydra's log: a checkpoint, an events file, a result
    or any file the user put there keeps the whole folder. Files are unlinked one by one and
    folders removed with ``rmdir`` (never a recursive delete), then the parent folders that this
    process created for the run, when they are empty.
    """
    if run_dir is None:
        return False
    root = Path(run_dir)
    if not root.is_dir() or root.is_symlink() or not created_here(root):
        return False
    files, folders = [], []
    for top, dirs, names in os.walk(root, followlinks=False):
        base = Path(top)
        for d in dirs:
            if (base / d).is_symlink():
                return False
            folders.append(base / d)
        for name in names:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file():
                return False
            top_level = "/" not in rel
            empty_events = top_level and name.startswith("events.out.tfevents.") and _records(path) <= 1
            if rel not in BOOKKEEPING and not (top_level and rel.endswith(".log")) and not empty_events:
                return False
            files.append(path)
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True) + [root]:
        with contextlib.suppress(OSError):
            folder.rmdir()
    for parent in root.parents:
        if not created_here(parent):
            break
        try:
            parent.rmdir()
        except OSError:
            break
    return not root.exists()


def _walk_checkpoints(root: Path) -> Iterator[Path]:
    """Every ``checkpoints/last*.ckpt`` under ``root``, following symbolic links to folders (a run
    may live elsewhere behind a link) and visiting each real folder once."""
    seen: set[tuple[int, int]] = set()
    for top, dirs, names in os.walk(root, followlinks=True):
        try:
            st = os.stat(top)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a link loop or a second link to one folder
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        if Path(top).name == "checkpoints":
            yield from (Path(top) / n for n in sorted(names) if n.startswith("last") and n.endswith(".ckpt"))


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
        if not path.exists():
            raise InterpError(f"checkpoint {path} does not exist")
        if not path.is_file():
            raise InterpError(f"checkpoint {path} is not a regular file (a pipe, socket or device?): give a .ckpt file")
        return str(path)
    root = Path(runs_root)
    if experiment:
        if "/" in experiment or experiment in (".", ".."):
            raise InterpError(f"experiment must be a plain folder name, got {experiment!r}")
        root = root / experiment
    candidates = [p for p in _walk_checkpoints(root) if p.is_file()]
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
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise fail(f"cannot be read: {e.strerror or e}") from None
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip format, or a legacy pickle
        kind = "a text file" if all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "another kind of file"
        raise fail(f"not a torch file: {kind}")
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
    for name, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise fail(f"its weights are not finite: {name} holds NaN or inf")
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


MAX_CONFIG_BYTES = 1 << 20
"""The largest ``config.yaml`` a run may have (a real one is a few kilobytes)."""

MAX_CONFIG_NODES = 100_000
"""The most YAML nodes a run's ``config.yaml`` may hold."""


def _has_interpolation(node: Any) -> str | None:
    """The first key (dotted) whose value holds an OmegaConf interpolation ``${...}``, else None."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            found = _has_interpolation(value)
            if found is not None:
                return f"{key}.{found}" if found else str(key)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found = _has_interpolation(value)
            if found is not None:
                return f"[{i}].{found}" if found else f"[{i}]"
    elif isinstance(node, str) and "${" in node:
        return ""
    return None


def load_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run's ``config.yaml`` as a plain dict (nothing is built, nothing is resolved).

    The file is untrusted input: it is read only when it is at most :data:`MAX_CONFIG_BYTES` long
    and holds at most :data:`MAX_CONFIG_NODES` nodes and no YAML alias (so an "alias bomb" cannot
    expand), and it is refused when it holds an interpolation ``${...}``: ``interp train`` saves the
    config resolved, and resolving a foreign file could call a resolver with side effects.

    Raises:
        InterpError: the file is missing, too large, not valid YAML holding a mapping, or holds
            an alias or an interpolation.
    """
    import yaml
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise InterpError(f"{path} not found: the config.yaml that `interp train` writes in the run folder")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise InterpError(f"{path} cannot be read: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise InterpError(f"{path} is larger than {MAX_CONFIG_BYTES >> 10} KiB: not the config.yaml of a run")
    try:
        text = raw.decode("utf-8")
        nodes = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise InterpError(f"{path} uses a YAML alias (*{event.anchor}): a run's config.yaml has none")
            nodes += isinstance(event, yaml.NodeEvent)
            if nodes > MAX_CONFIG_NODES:
                raise InterpError(f"{path} holds more than {MAX_CONFIG_NODES:,} YAML nodes: not a run's config.yaml")
        cfg = OmegaConf.create(text)
        plain = OmegaConf.to_container(cfg, resolve=False)
    except InterpError:
        raise
    except Exception as e:  # YAML errors, bad encodings
        raise InterpError(f"{path} is not a readable config: {str(e).splitlines()[0]}") from None
    if not isinstance(plain, dict):
        raise InterpError(f"{path} must hold a mapping, got {type(plain).__name__}")
    where = _has_interpolation(plain)
    if where is not None:
        raise UnsafeConfigError(
            f"{path}: {where} holds an interpolation ${{...}}; a run's config.yaml is saved resolved, "
            "so this file was changed by hand: refusing to resolve it"
        )
    return {str(k): v for k, v in plain.items()}


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
