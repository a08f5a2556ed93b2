"""``make gpu-check`` (benchmarks/gpu_check.py) on a machine without a GPU: the one-line refusal,
and the CPU smoke run that goes through every part of the script (render, dream, top-k, tests)."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from helpers import REPO, run_module

RESULTS_GPU = REPO / "benchmarks" / "RESULTS-gpu.md"


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="2")
    return run_module("benchmarks.gpu_check", list(args), env, REPO, timeout=600)


def _state(path):
    return path.stat().st_mtime_ns if path.exists() else None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: gpu_check would run for real")
def test_gpu_check_without_cuda_is_one_line_and_exit_2():
    proc = gpu_check()
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: CUDA is not available"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_cpu_run_refuses_to_write_the_gpu_results():
    before = _state(RESULTS_GPU)
    proc = gpu_check("--device", "cpu", "--out", str(RESULTS_GPU), "--parts", "render")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "does not write benchmarks/RESULTS-gpu.md" in proc.stderr and "Traceback" not in proc.stderr
    assert _state(RESULTS_GPU) == before


@pytest.mark.slow
def test_dry_run_goes_through_every_part_and_says_its_figures_are_not_gpu_figures(tmp_path):
    before = _state(RESULTS_GPU)
    out = tmp_path / "report.md"
    proc = gpu_check("--dry-run", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    assert "CPU smoke run, tiny sizes: not GPU figures" in report
    for part in ("## Render vs its floor", "## DeepDream", "## Top-k of layer4", "## Tests"):
        assert part in report, f"{part} missing from the report:\n{report}"
    assert "FAILED" not in report and "Not run" not in report, report
    assert _state(RESULTS_GPU) == before, "a CPU run touched benchmarks/RESULTS-gpu.md"
