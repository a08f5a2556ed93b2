#!/usr/bin/env bash
# Install the two anchor libraries of benchmarks/vs_anchors.py into the project venv
# without letting them touch torch:
#
#   torch-lucent 0.1.8   (pins kornia<=0.4.1, pulls pytest/coveralls/... it does not need)
#   torch-dreams 4.0.0   (asks for opencv-python and mkl)
#
# They go in with --no-deps, and then only the modules they really import when
# `lucent.optvis.render.render_vis` and `torch_dreams.Dreamer` run:
#   kornia 0.4.1              lucent.optvis.transform
#   decorator                 lucent.optvis.objectives
#   opencv-python-headless    torch_dreams (cv2, imported by its image parameterizations)
#   tqdm, numpy, pillow, ipython, scikit-learn   (usually there already; installed if missing)
# torch, torchvision and numpy are held at their installed versions by a constraints file.
# Idempotent: does nothing when both libraries already import. Fails loudly if torch changed.
#
# Usage: benchmarks/install_anchors.sh        (venv: $VENV, default <repo>/.venv)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
VENV="${VENV:-$REPO/.venv}"
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "install_anchors: no python at $PY (run 'make install' first or set VENV)" >&2
    exit 1
fi

CHECK='import lucent.optvis.render, lucent.optvis.objectives, lucent.optvis.param, torch_dreams; from torch_dreams import Dreamer'

if "$PY" -c "$CHECK" >/dev/null 2>&1; then
    echo "install_anchors: torch-lucent and torch-dreams already importable in $VENV; nothing to do"
    exit 0
fi

TORCH_BEFORE="$("$PY" -c 'import torch; print(torch.__version__)')"
VISION_BEFORE="$("$PY" -c 'import torchvision; print(torchvision.__version__)')"
echo "install_anchors: venv $VENV, torch $TORCH_BEFORE, torchvision $VISION_BEFORE"

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
# Pin what is installed now (torch, torchvision, numpy) so no resolver step can replace it.
"$PY" - >"$CONSTRAINTS" <<'EOF'
from importlib import metadata
for name in ("torch", "torchvision", "numpy"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
EOF

PIP=("$PY" -m pip install --disable-pip-version-check)

"${PIP[@]}" --no-deps "torch-lucent==0.1.8" "torch-dreams==4.0.0" "kornia==0.4.1"

# Runtime needs, by import name -> distribution name; install only the missing ones.
MISSING=()
while read -r module dist; do
    if ! "$PY" -c "import $module" >/dev/null 2>&1; then
        MISSING+=("$dist")
    fi
done <<'EOF'
decorator decorator
cv2 opencv-python-headless
tqdm tqdm
numpy numpy
PIL pillow
IPython ipython
sklearn scikit-learn
EOF

if [ "${#MISSING[@]}" -gt 0 ]; then
    echo "install_anchors: installing runtime needs: ${MISSING[*]}"
    echo "install_anchors: (pip may then say torch-lucent 'requires' coverage, coveralls, future," \
         "pytest-mock: its test tools and a Python 2 shim, not needed to run it)"
    "${PIP[@]}" -c "$CONSTRAINTS" "${MISSING[@]}"
fi

TORCH_AFTER="$("$PY" -c 'import torch; print(torch.__version__)')"
VISION_AFTER="$("$PY" -c 'import torchvision; print(torchvision.__version__)')"
if [ "$TORCH_AFTER" != "$TORCH_BEFORE" ] || [ "$VISION_AFTER" != "$VISION_BEFORE" ]; then
    echo "install_anchors: ERROR: torch/torchvision changed from $TORCH_BEFORE/$VISION_BEFORE" \
         "to $TORCH_AFTER/$VISION_AFTER; reinstall the project venv" >&2
    exit 1
fi

if ! "$PY" -c "$CHECK"; then
    echo "install_anchors: ERROR: the anchors still do not import (see the traceback above)" >&2
    exit 1
fi
echo "install_anchors: OK: torch-lucent 0.1.8 and torch-dreams 4.0.0 import; torch still $TORCH_AFTER"
