"""`make docs`: the HTML API reference of the four public packages builds, and documents them."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow


def test_make_docs_builds_the_api_reference(tmp_path):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    # the Makefile's own command and module list, into a temporary folder
    makefile = (REPO / "Makefile").read_text()
    modules = re.search(r"^DOCS_MODULES := (.+)$", makefile, flags=re.M)
    assert modules, "the Makefile names the documented modules in DOCS_MODULES"
    proc = subprocess.run(
        ["make", "-s", "docs", "DOCS_MODULES=" + modules[1]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = REPO / "build" / "docs"
    for module in modules[1].split():
        page = out / (module.replace(".", "/") + ".html")
        assert page.is_file(), page
    optvis = (out / "interp" / "optvis.html").read_text()
    # a public function with its documented arguments and return value
    assert "render_units" in optvis and "mine_topk" in optvis
    steps = (out / "interp" / "steps.html").read_text()
    assert "feature_visualization" in steps
    # pdoc's own warnings (an annotation it cannot resolve, a broken link): "Warn: ..." lines; a reinstall's pip and
    # setuptools messages on stderr are not the reference's
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warn")]
    assert not warnings, "\n".join(warnings)
