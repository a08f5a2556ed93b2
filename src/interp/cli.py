"""Command line: ``python -m interp train`` and ``python -m interp visualize`` (Hydra apps).

The subcommand picks the Hydra config (``configs/train.yaml`` or ``configs/visualize.yaml``);
everything after it is Hydra's: overrides (``trainer.max_epochs=2``), ``--help``, ``-m`` sweeps.
Expected errors (:class:`~interp.errors.InterpError`, also when Hydra or OmegaConf wrap one) are
printed here, once, as ``interp <command>: error: ...`` with exit code 2; ``INTERP_DEBUG=1``
shows the traceback as well.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
        "train and visualize take Hydra overrides and `--help` (config groups and defaults).",
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
    except ValueError:  # Hydra is not running
        return None


def remove_if_empty_run(run_dir: Path | None) -> None:
    """Remove a failed run's folder when it holds no checkpoint and no result (only the config
    and Hydra's bookkeeping): failed runs do not clutter ``runs/`` and TensorBoard."""
    if run_dir is None or not run_dir.is_dir():
        return
    keep = any(run_dir.glob("checkpoints/*.ckpt")) or any(p.is_file() for p in run_dir.glob("interp/**/*"))
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the experiment folder too, when this run was all it held
            run_dir.parent.rmdir()


def reporting(command: str, task: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a Hydra task: an expected error is printed as one line (the message of the
    :class:`InterpError`), the run folder is removed when it holds nothing, and the process exits
    with code 2; any other exception is a bug and keeps its traceback."""

    def wrapped(cfg: Any) -> Any:
        try:
            return task(cfg)
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                remove_if_empty_run(_run_dir())
                raise
            if os.environ.get("INTERP_DEBUG"):
                traceback.print_exc()
            remove_if_empty_run(_run_dir())
            fail(command, error)

    return wrapped


def run_hydra(command: str, argv: list[str]) -> None:
    import hydra

    from interp import apps

    register_resolvers()
    task = reporting(command, apps.train if command == "train" else apps.visualize)
    app = hydra.main(config_path=config_dir(), config_name=command, version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [f"interp {command}", *argv]
    try:
        app()
    finally:
        sys.argv = saved


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
        if command == "atlas":
            from interp import apps

            apps.atlas(rest)
            return
        run_hydra(command, rest)
    except InterpError as exc:  # raised before Hydra runs the task (the config folder is missing, say)
        fail(command, exc)
