"""Run every benchmark script of this folder, one after the other, each in its own process.

Order: train_speed, topk_speed, optvis_speed, vggface2_dream, vs_anchors, then any other
``benchmarks/*.py`` script alphabetically (``common.py`` and this file excepted). Scripts that do
not exist are skipped. Each script writes its own section of ``benchmarks/RESULTS.md``.

Arguments this runner does not know are passed to every script (e.g. ``--no-write``,
``--threads 2``)::

    .venv/bin/python -m benchmarks.run_all
    .venv/bin/python -m benchmarks.run_all --only vs_anchors,vggface2_dream --no-write
    .venv/bin/python -m benchmarks.run_all --skip train_speed

``vs_anchors`` needs Lucent and torch-dreams: ``benchmarks/install_anchors.sh`` first. A failing
script does not stop the others; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ORDER = ["train_speed", "topk_speed", "optvis_speed", "vggface2_dream", "vs_anchors"]
NOT_BENCHMARKS = {"common", "run_all", "__init__"}


def scripts() -> list[str]:
    present = {p.stem for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS and not p.stem.startswith("_")}
    return [name for name in ORDER if name in present] + sorted(present - set(ORDER))


def names(text: str | None) -> set[str]:
    return {n.strip().removesuffix(".py") for n in text.split(",") if n.strip()} if text else set()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Any other argument is passed to every script.",
    )
    parser.add_argument("--only", help="comma-separated script names to run (others skipped)")
    parser.add_argument("--skip", help="comma-separated script names to skip")
    parser.add_argument("--list", action="store_true", help="print the scripts that would run, and exit")
    args, passthrough = parser.parse_known_args()

    only, skip = names(args.only), names(args.skip)
    available = scripts()
    unknown = (only | skip) - set(available)
    if unknown:
        print(
            f"run_all: no such benchmark script(s): {', '.join(sorted(unknown))}; available: {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    todo = [n for n in available if (not only or n in only) and n not in skip]
    if args.list:
        print("\n".join(todo))
        return 0

    results: list[tuple[str, int, float]] = []
    for name in todo:
        command = [sys.executable, "-m", f"benchmarks.{name}", *passthrough]
        shown = " ".join(["-m", f"benchmarks.{name}", *passthrough])
        print(f"\n=== {name}: {shown}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call(command, cwd=REPO)
        results.append((name, rc, time.perf_counter() - start))
        print(f"=== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {results[-1][2]:.0f} s", flush=True)

    print("\nSummary:")
    for name, rc, seconds in results:
        print(f"  {name:16s} {'ok' if rc == 0 else f'FAILED (exit {rc})':18s} {seconds:6.0f} s")
    return 1 if any(rc for _, rc, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
