"""Command line: ``python -m interp train`` and ``python -m interp visualize`` (Hydra apps).

The subcommand picks the Hydra config (``configs/train.yaml`` or ``configs/visualize.yaml``);
everything after it is Hydra's: overrides (``trainer.max_epochs=2``), ``--help``, ``-m`` sweeps.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from interp.errors import InterpError

COMMANDS = {
    "train": "Train the MNIST MLP with Lightning; interpretation callbacks run when training ends.",
    "visualize": "Interpret a checkpoint or the VGGFace2 ResNet-50 without training (panels, DeepDream, ...).",
}
CONFIG_DIR_ENV = "INTERP_CONFIG_DIR"


def config_dir() -> str:
    """The Hydra config folder: ``$INTERP_CONFIG_DIR`` or ``configs/`` of the source checkout."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return str(Path(env).resolve())
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "configs" / "train.yaml").exists():
            return str(parent / "configs")
    raise InterpError(f"cannot find the configs/ folder above {here.parent}; set ${CONFIG_DIR_ENV}")


def unique_dir(path: str) -> str:
    """``path`` if it does not exist yet, else ``path-1``, ``path-2``...: a run is never overwritten."""
    candidate, n = path, 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


_resolved: dict[str, str] = {}


def _unique_dir_resolver(path: str) -> str:
    # Hydra resolves hydra.run.dir more than once; answer the same folder every time.
    if path not in _resolved:
        _resolved[path] = unique_dir(path)
    return _resolved[path]


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", _unique_dir_resolver)


def _usage() -> str:
    lines = ["usage: python -m interp <command> [hydra overrides ...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", "Each command takes Hydra overrides and `--help` (config groups and defaults).",
              "Examples:", "  python -m interp train trainer.max_epochs=2 model.lr=1e-3",
              "  python -m interp visualize ckpt=latest layer=dense_1 unit=32"]
    return "\n".join(lines)


def run_hydra(command: str, argv: list[str]) -> None:
    import hydra

    _register_resolvers()
    if command == "train":
        from interp.apps import train as task
    else:
        from interp.apps import visualize as task
    if command == "visualize":
        # `data=<folder>` names images to mine; `data` is also the name of train's config group,
        # so Hydra would read it as a group choice: pass it on as `data_dir`.
        argv = [f"data_dir={a[5:]}" if a.startswith("data=") else a for a in argv]
    app = hydra.main(config_path=config_dir(), config_name=command, version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [f"interp {command}"] + argv
    try:
        app()
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"interp: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    try:
        run_hydra(command, rest)
    except InterpError as exc:
        print(f"interp {command}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
