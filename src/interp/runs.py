"""Run folders: where runs live and how ``latest`` is found."""

from __future__ import annotations

from pathlib import Path

from interp.errors import InterpError


def find_checkpoint(spec: str, runs_root: str | Path = "runs", exclude: str | Path | None = None) -> str:
    """Resolve ``latest`` (newest ``last.ckpt`` under ``runs_root``) or a checkpoint path."""
    if spec != "latest":
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InterpError(f"checkpoint {path} does not exist")
        return str(path)
    root = Path(runs_root)
    candidates = [p for p in root.glob("**/checkpoints/last*.ckpt") if p.is_file()]
    if exclude is not None:
        ex = Path(exclude).resolve()
        candidates = [p for p in candidates if ex not in p.resolve().parents]
    if not candidates:
        raise InterpError(f"no checkpoint found under {root}/ (looked for */checkpoints/last.ckpt); train first")
    return str(max(candidates, key=lambda p: p.stat().st_mtime))
