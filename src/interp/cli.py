"""Command line: ``python -m interp train`` and ``python -m interp visualize`` (Hydra apps).

The subcommand picks the Hydra config (``configs/train.yaml`` or ``configs/visualize.yaml``);
everything after it is Hydra's: overrides (``trainer.max_epochs=2``), ``--help``, ``-m`` sweeps.
Expected errors (:class:`~interp.errors.InterpError`, also when Hydra or OmegaConf wrap one) are
printed here, once, as ``interp <command>: error: ...`` with exit code 2; ``INTERP_DEBUG=1``
shows the traceback as well.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from interp.config import config_dir, register_resolvers
from interp.errors import InterpError

COMMANDS = {
    "train": "Train a model (the MNIST MLP; model=cnn: a CNN) with Lightning, then run the interpretations.",
    "visualize": "Interpret a checkpoint or the VGGFace2 ResNet-50 without training (panels, DeepDream, ...).",
    "atlas": "Write the unit atlas (static HTML pages per layer and unit) of a trained run: atlas ckpt=latest.",
}
EXIT_USER_ERROR = 2


def _usage() -> str:
    lines = ["usage: python -m interp <command> [hydra overrides ...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "Each command takes Hydra overrides (key=value) and `--help` (its settings and defaults).",
        "Examples:",
        "  python -m interp train trainer.max_epochs=2 model.lr=1e-3",
        "  python -m interp visualize ckpt=latest layer=dense_1 units=32",
        "  python -m interp atlas ckpt=latest",
    ]
    return "\n".join(lines)


def fail(command: str, error: InterpError) -> NoReturn:
    """Print an expected error the one way users see them, and exit with code 2."""
    print(f"interp {command}: error: {error}", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR)


def user_error(exc: BaseException | None) -> InterpError | None:
    """The :class:`InterpError` that ``exc`` is or wraps (Hydra's instantiation and OmegaConf's
    interpolation errors keep the original as their cause), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InterpError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _run_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # Hydra is not running, or failed before it chose the folder
        return None


def remove_if_empty_run(run_dir: Path | None) -> None:
    """Remove a failed run's folder when this process created it and it holds nothing but the
    config and Hydra's bookkeeping (see :func:`interp.runs.remove_failed_run`): a folder that
    existed before the run, or that holds a checkpoint, events or results, is never removed."""
    from interp.runs import remove_failed_run

    remove_failed_run(run_dir)


_DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file grew past the size limit (ulimit -f)"}
if hasattr(errno, "EDQUOT"):
    _DISK_ERRNOS[errno.EDQUOT] = "the disk quota is exceeded"


def disk_error(exc: BaseException | None) -> InterpError | None:
    """An out-of-space ``OSError`` (full disk, file size limit, quota) in ``exc``'s chain, as one line."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            where = f" while writing {exc.filename}" if exc.filename else ""
            return InterpError(f"out of space: {_DISK_ERRNOS[exc.errno]}{where}; free some space and run again")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def resolve_all(cfg: Any) -> None:
    """Resolve every interpolation of the composed config now, so that a bad one (an unset
    ``${oc.env:X}``, a value that refers to itself) is one line before any work, not a traceback
    halfway through."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        if user_error(e) is not None:
            raise
        key = getattr(e, "full_key", None)
        where = f"{key}: " if key else ""
        raise InterpError(f"the config does not resolve: {where}{_first_line(e)}") from None


class _TaskState:
    started = False


def reporting(command: str, task: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a Hydra task: an expected error is printed as one line (the message of the
    :class:`InterpError`), the run folder is removed when this process made it and it holds
    nothing, and the process exits with code 2; any other exception is a bug and keeps its
    traceback."""

    def wrapped(cfg: Any) -> Any:
        _TaskState.started = True
        try:
            resolve_all(cfg)
            return task(cfg)
        except Exception as exc:
            error = user_error(exc) or disk_error(exc)
            if error is None:
                remove_if_empty_run(_run_dir())
                raise
            if os.environ.get("INTERP_DEBUG"):
                traceback.print_exc()
            remove_if_empty_run(_run_dir())
            fail(command, error)

    return wrapped


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _other_command_has(command: str, key: str) -> str | None:
    """The other Hydra command whose top-level config sets ``key``, if any."""
    import yaml

    for other in ("train", "visualize", "atlas"):
        if other == command:
            continue
        try:
            with open(Path(config_dir()) / f"{other}.yaml", encoding="utf-8") as f:
                node = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError, InterpError):
            continue
        if isinstance(node, dict) and key in node:
            return other
    return None


def hydra_error(command: str, exc: BaseException) -> InterpError:
    """One line, with a hint, for an error Hydra or OmegaConf raised while reading the command
    line and composing the config (before the task ran): the user's mistake, not a bug."""
    text = str(exc)
    first = _first_line(exc)
    if m := re.search(r"Ambiguous value for argument '([^=']+)=([^']*)'", text):
        key, value = m[1], m[2]
        return InterpError(
            f"{key}={value}: a comma makes Hydra read a sweep; quote the value for Hydra, as in "
            f"\"{key}='{value}'\" (or give a list: {key}=[{value}])"
        )
    if m := re.search(r"Could not (?:find|load) '([^']+)/([^'/]+)'", text):
        group, name = m[1], m[2]
        try:
            options = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))
        except InterpError:
            options = []
        choices = f": choose from {', '.join(options)}" if options else ""
        return InterpError(f"{group}: there is no {name!r}{choices}")
    if m := re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text):
        key = m[1]
        other = _other_command_has(command, key.split(".")[0])
        hint = f"; it is a setting of `{other}`" if other else f"; see `python -m interp {command} --help`"
        return InterpError(f"{key} is not a setting of `{command}`{hint}")
    if type(exc).__name__ == "OverrideParseException" or "mismatched input" in text or "token recognition" in text:
        return InterpError(
            f"cannot read an override ({first}); quote values with spaces, commas or non-ASCII characters "
            "for Hydra, as in \"key='value'\""
        )
    return InterpError(f"{first} (see `python -m interp {command} --help`)")


def _output_dir_override(argv: list[str]) -> str | None:
    """The value of a ``hydra.run.dir=...`` override, when given literally."""
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key == "hydra.run.dir":
            return value.strip("'\"")
    return None


def check_output_dir(argv: list[str]) -> None:
    """Refuse ``hydra.run.dir=<folder>`` when the folder exists and is not empty: a run never
    writes into another run or into a folder of the user's (its files would be overwritten)."""
    value = _output_dir_override(argv)
    if value is None or "${" in value:
        return
    path = Path(value).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        what = "holds a run" if (path / "config.yaml").exists() or (path / ".hydra").exists() else "is not empty"
        raise InterpError(
            f"hydra.run.dir={value}: {path} {what}; give a new or empty folder, or leave hydra.run.dir out "
            "(runs go to runs_dir/experiment/<time>)"
        )


def run_hydra(command: str, argv: list[str]) -> None:
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from interp import apps

    register_resolvers()
    check_output_dir(argv)
    task = reporting(command, {"train": apps.train, "visualize": apps.visualize, "atlas": apps.atlas}[command])
    app = hydra.main(config_path=config_dir(), config_name=command, version_base="1.3")(task)
    saved = sys.argv
    saved_env = os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [f"interp {command}", *argv]
    # Hydra then raises its errors instead of printing them with a traceback: they are printed here.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    _TaskState.started = False
    try:
        app()
    except Exception as exc:
        error = user_error(exc) or disk_error(exc)
        if error is not None:
            remove_if_empty_run(_run_dir())
            fail(command, error)
        if _TaskState.started or not isinstance(exc, (HydraException, OmegaConfBaseException)):
            raise
        fail(command, hydra_error(command, exc))
    finally:
        sys.argv = saved
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    return f"{category.__name__}: {message}\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = _one_line_warning  # a warning is one line, without the source line under it
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"interp: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)
    try:
        run_hydra(command, rest)
    except InterpError as exc:  # raised before Hydra runs the task (the config folder is missing, say)
        fail(command, exc)
