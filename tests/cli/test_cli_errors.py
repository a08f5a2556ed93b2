"""Every expected user error of the CLI: exit code 2, exactly one stderr line
``interp <command>: error: ...``, no traceback, and no run folder left behind.

Importing Lightning takes 15-25 s on the project's 2-core machines, so running ~40 cases as
``python -m interp`` one by one would take ten minutes. The cases therefore run in a *fork
server*: one subprocess imports the CLI and its dependencies once, then forks a fresh child per
case that calls ``interp.cli.main(argv)`` with its own environment, working directory, stdout and
stderr files, and exit code (what ``python -m interp`` does, since ``__main__`` only calls
``main()``). Whatever the imports print on stderr is prepended to every case's stderr, so a
warning printed at import time still counts as an extra line. Two cases also run through
``helpers.run_cli`` (a plain ``python -m interp``) and must print the same as the fork server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from helpers import run_cli, start_cli

pytestmark = pytest.mark.slow

CASE_TIMEOUT = 240

# --- the fork server ----------------------------------------------------------------------------

SERVER = r"""
import atexit, json, logging, os, signal, sys, traceback
# The CLI imports Lightning only after Hydra configured the root logger; Lightning then lets its
# records propagate (to its own "INFO: ..." handler on stderr and Hydra's on stdout) instead of
# adding a plain handler of its own. A placeholder root handler during the imports does the same.
placeholder = logging.NullHandler()
logging.getLogger().addHandler(placeholder)
import torch, lightning.pytorch, hydra, omegaconf
import interp.cli, interp.apps, interp.visualize, interp.runs, interp.config
logging.getLogger().removeHandler(placeholder)
sys.stderr.flush()
preamble = open(sys.argv[1]).read()
protocol = sys.stdout
print(json.dumps({"ready": True, "preamble": preamble}), file=protocol, flush=True)
for line in sys.stdin:
    job = json.loads(line)
    protocol.flush()
    sys.stderr.flush()
    started = __import__("time").monotonic()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(int(job["timeout"]))
            os.chdir(job["cwd"])
            os.environ.clear()
            os.environ.update(job["env"])
            out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(err, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr.write(preamble)
            sys.argv = ["python -m interp", *job["argv"]]
            try:
                interp.cli.main(job["argv"])
                code = 0
            except SystemExit as e:
                if e.code is None:
                    code = 0
                elif isinstance(e.code, int):
                    code = e.code
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:
                traceback.print_exc()
                code = 1
            atexit._run_exitfuncs()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    elapsed = __import__("time").monotonic() - started
    print(json.dumps({"returncode": rc, "seconds": elapsed}), file=protocol, flush=True)
"""


class Result:
    """What a CLI case produced, like ``subprocess.CompletedProcess`` plus its wall time."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str, seconds: float):
        self.args, self.returncode, self.stdout, self.stderr, self.seconds = argv, returncode, stdout, stderr, seconds

    def __repr__(self) -> str:
        return f"interp {' '.join(self.args)} -> {self.returncode}\nstderr:\n{self.stderr[-3000:]}"


class Server:
    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir = workdir
        self.count = 0
        self.preamble_file = workdir / "server-stderr.txt"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.preamble_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.preamble_file.open("w"),
            text=True,
            env=env,
            cwd=workdir,
        )
        hello = self.proc.stdout.readline()
        assert hello, f"the fork server did not start: {self.preamble_file.read_text()[-3000:]}"
        self.preamble = json.loads(hello)["preamble"]

    def __call__(self, argv: list[str], env: dict[str, str], cwd: Path, timeout: float = CASE_TIMEOUT) -> Result:
        self.count += 1
        out, err = self.workdir / f"{self.count}.out", self.workdir / f"{self.count}.err"
        job = {"argv": argv, "env": env, "cwd": str(cwd), "stdout": str(out), "stderr": str(err), "timeout": timeout}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply, f"the fork server died: {self.preamble_file.read_text()[-3000:]}"
        done = json.loads(reply)
        return Result(argv, done["returncode"], out.read_text(), err.read_text(), done["seconds"])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("INTERP_DEBUG", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("fork_server"), base_env())
    yield server
    server.close()


# --- assertions ---------------------------------------------------------------------------------


def run_folders(runs_dir: Path) -> set[Path]:
    """Every ``<experiment>/<run>`` folder (and sweep subfolder) under ``runs_dir``."""
    if not runs_dir.is_dir():
        return set()
    return {p for p in runs_dir.glob("*/*") if p.is_dir()} | {p for p in runs_dir.glob("*/multirun_*/*") if p.is_dir()}


def expect_error(result: Result, command: str, pattern: str, runs_dir: Path, before: set[Path]) -> str:
    """Exit code 2, one stderr line ``interp <command>: error: ...`` matching ``pattern``, no
    traceback, no new run folder under ``runs_dir``. Returns the message."""
    assert "Traceback" not in result.stderr + result.stdout, result
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    info = [line for line in lines if re.match(r"(INFO|\[[^]]*\]\[\w+\]\[INFO\])", line)]
    assert not info, f"log lines on stderr before the error: {info}\n{result}"
    assert len(lines) == 1, f"{len(lines)} stderr lines, expected exactly one\n{result}"
    prefix = f"interp {command}: error: "
    assert lines[0].startswith(prefix), result
    message = lines[0][len(prefix) :]
    assert re.search(pattern, message), f"{pattern!r} not found in {message!r}"
    left = run_folders(runs_dir) - before
    assert not left, f"run folders left behind: {sorted(map(str, left))}"
    return message


# --- a trained checkpoint ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(trained_run, mnist_root):
    """``(cwd, env, checkpoint)``: the session's shared run (tests/conftest.py), trained by ``python -m interp
    train``. The cases only fail in ``cwd``: they leave no run folder there (each checks), so the run stays as
    trained; a case that must write a run works in its own tmp_path."""
    return trained_run.cwd, base_env(INTERP_DATA_DIR=str(mnist_root)), trained_run.ckpt


# --- visualize: units, layer, numbers, device ---------------------------------------------------

SETTINGS = {
    "units=9999": (["units=9999"], r"unit 9999 is out of range: dense_1 has 512 units \(0-511\)"),
    "units=0-600": (["units=0-600"], r"unit 5\d\d is out of range: dense_1 has 512 units"),
    "units=abc": (["units=abc"], r"cannot read units='abc'"),
    "units=-1": (["units=-1"], r"units must be >= 0, got -1"),
    "layer=dense_9": (["layer=dense_9"], r"unknown layer 'dense_9' in MnistMLP\. Closest: dense_"),
    "steps=0": (["steps=0"], r"^steps=0: must be a whole number from 1 to 100000$"),
    "steps=-3": (["steps=-3"], r"^steps=-3: must be a whole number from 1 to 100000$"),
    "size=0": (["size=0"], r"^size=0: must be a whole number from 16 to 4096$"),
    "size=1": (["size=1"], r"^size=1: must be a whole number from 16 to 4096$"),
    "size=100000": (["size=100000"], r"^size=100000: must be a whole number from 16 to 4096$"),
    "devices=abc": (["devices=abc"], r"^devices='abc': must be a whole number from 1 to 256$"),
    "devices=0": (["devices=0"], r"^devices=0: must be a whole number from 1 to 256$"),
    "device=mps": (["device=mps"], r"^device=mps: Apple's MPS is not available on this machine"),
    "units=0-999999999": (["units=0-999999999"], r"units='0-999999999' names 1,000,000,000 units; at most 65,536"),
    "device=cuda": (["device=cuda"], r"device=cuda: CUDA is not available"),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_visualize_checkpoint_settings(cli, trained, case):
    if case in ("device=cuda", "device=mps"):
        import torch

        if torch.cuda.is_available() if case == "device=cuda" else torch.backends.mps.is_available():
            pytest.skip(f"{case} is available here")
    cwd, env, _ = trained
    overrides, pattern = SETTINGS[case]
    before = run_folders(cwd / "runs")
    result = cli(["visualize", "ckpt=latest", *overrides], env, cwd)
    expect_error(result, "visualize", pattern, cwd / "runs", before)


def test_visualize_octaves_zero(cli, tmp_path):
    before = run_folders(tmp_path / "runs")
    result = cli(["visualize", "preset=vggface2", "model.weights=random", "octaves=0"], base_env(), tmp_path)
    expect_error(result, "visualize", r"^octaves=0: must be a whole number from 1 to 12$", tmp_path / "runs", before)


@pytest.mark.parametrize("command", ["visualize", "train"])
def test_fork_server_matches_python_dash_m(cli, trained, tmp_path, command):
    """One case of each command through a plain ``python -m interp`` as well: the fork server
    must give the same exit code and the same stderr (Lightning's log lines included)."""
    cwd, env, _ = trained
    if command == "visualize":
        args = ["visualize", "ckpt=latest", "steps=0"]
    else:
        write_idx(tmp_path / "data" / "MNIST" / "raw")
        cwd, env = tmp_path, base_env(INTERP_DATA_DIR=str(tmp_path / "data"))
        args = ["train", *TRAIN_FAST, "layer=dense_9"]
    direct = run_cli(args, env, cwd, timeout=300)
    forked = cli(args, env, cwd)
    assert "Traceback" not in direct.stderr, direct.stderr[-3000:]
    assert direct.returncode == forked.returncode == 2, (direct.stderr[-3000:], forked)
    assert direct.stderr == forked.stderr


# --- visualize: checkpoints that are not ones -----------------------------------------------------


def _bad_checkpoint(kind: str, folder: Path, real: Path) -> Path:
    import torch

    path = folder / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(real.read_bytes()[:1000])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "folder":
        path.mkdir()
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "missing":
        pass
    return path


BAD_CHECKPOINTS = {
    "empty": r"\(the file is empty\)$",
    "truncated": r"\(corrupt, truncated or not a torch file: .+\)$",
    "text": r"\(not a torch file: a text file\)$",
    "folder": r"(is a folder|\(a folder, not a file\))",
    "tensor": r"\(it holds a Tensor, not a checkpoint dict\)$",
    "missing": r"(does not exist|\(no such file\))$",
}


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_visualize_refuses_what_is_not_a_checkpoint(cli, trained, tmp_path, kind):
    cwd, env, real = trained
    path = _bad_checkpoint(kind, tmp_path, real)
    before = run_folders(cwd / "runs")
    result = cli(["visualize", f"ckpt={path}"], env, cwd)
    message = expect_error(result, "visualize", BAD_CHECKPOINTS[kind], cwd / "runs", before)
    assert str(path) in message
    if kind not in ("folder", "missing"):
        assert message.startswith(f"not a checkpoint of this project: {path} ("), message
    assert "weights_only" not in result.stderr and "weights_only" not in result.stdout


UNSAFE = {
    "model-copyfile": ("model", "shutil.copyfile"),
    "model-system": ("model", "os.system"),
    "data-system": ("data", "os.system"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_visualize_refuses_a_config_naming_foreign_targets(cli, trained, tmp_path, case):
    import yaml

    cwd, env, real = trained
    node, target = UNSAFE[case]
    marker = tmp_path / "marker"
    run = tmp_path / "runs" / "evil" / "2020-01-01_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copyfile(real, run / "checkpoints" / "last.ckpt")
    config = yaml.safe_load((real.parent.parent / "config.yaml").read_text())
    if target == "shutil.copyfile":
        evil = {"_target_": target, "src": str(real), "dst": str(marker)}
    else:
        evil = {"_target_": target, "command": f"touch {marker}"}
    config[node] = evil
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    before = run_folders(cwd / "runs")
    result = cli(["visualize", f"ckpt={run / 'checkpoints' / 'last.ckpt'}"], env, cwd)
    pattern = rf"config\.yaml: {node}\._target_ '{re.escape(target)}' is not one of this project's classes"
    expect_error(result, "visualize", pattern, cwd / "runs", before)
    assert not marker.exists(), f"{target} ran: {marker} exists"


# --- visualize: images for DeepDream --------------------------------------------------------------


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A valid 1x1 PNG whose IHDR then claims ``width`` x ``height`` (CRC fixed): a decompression
    bomb as far as PIL's header check is concerned, in 70 bytes."""
    from PIL import Image

    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


IMAGES = {
    "missing": r"^image not found: .*nothing\.png$",
    "folder": r"is a folder, not an image file$",
    "text": r"x\.png is not an image file that can be read",
    "bomb": r"bomb\.png: 900,000,000 pixels, more than PIL\.Image\.MAX_IMAGE_PIXELS .* decompression bomb",
}


@pytest.mark.parametrize("kind", list(IMAGES))
def test_visualize_dream_image_errors(cli, tmp_path, kind):
    if kind == "missing":
        image = tmp_path / "nothing.png"
    elif kind == "folder":
        image = tmp_path / "photos"
        image.mkdir()
    elif kind == "text":
        image = tmp_path / "x.png"
        image.write_text("not a picture\n")
    else:
        image = tmp_path / "bomb.png"
        _png_claiming(image, 30000, 30000)
    args = ["visualize", "preset=vggface2", "model.weights=random", "callbacks=[dream]", f"image={image}"]
    before = run_folders(tmp_path / "runs")
    result = cli([*args, "size=32", "octaves=1", "steps_per_octave=1"], base_env(), tmp_path)
    message = expect_error(result, "visualize", IMAGES[kind], tmp_path / "runs", before)
    assert str(image) in message


# --- visualize: folders of images for top-k -------------------------------------------------------

DATA_DIRS = {
    "missing": r"^image folder not found: .*nothing$",
    "empty": r"^no image files \(.*\) in .*empty$",
    "only-text": r"^no image files \(.*\) in .*text_only$",
}


def _face(path: Path) -> None:
    from PIL import Image

    from interp.data.images import default_face_image_path

    with Image.open(default_face_image_path()) as img:
        img.convert("RGB").resize((64, 64)).save(path)


@pytest.mark.parametrize("kind", list(DATA_DIRS))
def test_visualize_topk_data_dir_errors(cli, tmp_path, kind):
    folder = tmp_path / {"missing": "nothing", "empty": "empty", "only-text": "text_only"}[kind]
    if kind != "missing":
        folder.mkdir()
    if kind == "only-text":
        (folder / "notes.txt").write_text("no pictures here\n")
    args = ["visualize", "preset=vggface2", "model.weights=random", "callbacks=[topk]", f"data_dir={folder}"]
    before = run_folders(tmp_path / "runs")
    result = cli([*args, "units=[0,1]"], base_env(), tmp_path)
    message = expect_error(result, "visualize", DATA_DIRS[kind], tmp_path / "runs", before)
    assert str(folder) in message


def test_visualize_topk_skips_an_unreadable_image_with_one_warning(cli, tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    _face(folder / "a.png")
    _face(folder / "b.png")
    (folder / "bad.png").write_bytes(os.urandom(512))
    args = ["visualize", "preset=vggface2", "model.weights=random", "callbacks=[topk]", f"data_dir={folder}"]
    result = cli([*args, "layer=fc", "units=[0,1]"], base_env(), tmp_path)
    assert "Traceback" not in result.stderr + result.stdout, result
    assert result.returncode == 0, result
    warnings = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(warnings) == 1, result
    assert re.search(r"skipped 1 of 3 image files in .*faces that cannot be read \(first: .*bad\.png", warnings[0])
    assert "error:" not in result.stderr, result
    (run,) = run_folders(tmp_path / "runs")
    assert list(run.glob("interp/topk/fc/*.png")), sorted(run.rglob("*"))


# --- visualize: VGGFace2 weights that do not fit --------------------------------------------------


def test_visualize_weights_with_wrong_keys(cli, tmp_path):
    import torch

    weights = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, weights)
    before = run_folders(tmp_path / "runs")
    result = cli(["visualize", "preset=vggface2", f"model.weights={weights}"], base_env(), tmp_path)
    assert "Traceback" not in result.stderr + result.stdout, result
    assert result.returncode == 2, result
    assert "\\n" not in result.stderr, result
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"interp visualize: error: the weights in {weights} do not fit the model"), result
    assert re.search(r"^  missing \(\d+\): conv1\.weight", result.stderr, re.M), result
    assert re.search(r"^  unexpected \(1\): foo$", result.stderr, re.M), result
    assert all(line.startswith("  ") for line in lines[1:]), result
    assert not run_folders(tmp_path / "runs") - before


# --- train: broken MNIST files, wrong layer or units, nothing to resume ---------------------------


def write_idx(raw: Path, n_train: int = 300, n_test: int = 100, n_train_labels: int | None = None) -> None:
    """A small synthetic MNIST in the IDX format (magic 2051/2049, big-endian)."""
    import numpy as np

    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n, n_labels in (("train", n_train, n_train_labels or n_train), ("t10k", n_test, n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n_labels) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n_labels) + labels.tobytes())


MNIST_CASES = {
    "truncated": ([], "train-images-idx3-ubyte", r"is truncated: \d+ bytes where its header \(300 x 28 x 28\)"),
    "bad-magic": ([], "train-labels-idx1-ubyte", r"has magic number 2051 \(0x00000803\), not 2049"),
    "few-labels": ([], "train-labels-idx1-ubyte", r"holds 299 labels for the 300 images"),
    "few-labels-subset": (["data.subset=100"], "train-labels-idx1-ubyte", r"holds 299 labels for the 300 images"),
}

TRAIN_FAST = ["trainer=fast", "trainer.enable_progress_bar=false", "data.val_size=50"]


@pytest.mark.parametrize("case", list(MNIST_CASES))
def test_train_broken_mnist_file(cli, tmp_path, case):
    overrides, name, pattern = MNIST_CASES[case]
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_idx(raw, n_train_labels=299 if case.startswith("few-labels") else None)
    if case == "truncated":
        (raw / name).write_bytes((raw / name).read_bytes()[:-100])
    elif case == "bad-magic":
        data = bytearray((raw / name).read_bytes())
        data[0:4] = struct.pack(">I", 2051)
        (raw / name).write_bytes(bytes(data))
    env = base_env(INTERP_DATA_DIR=str(tmp_path / "data"))
    before = run_folders(tmp_path / "runs")
    result = cli(["train", *TRAIN_FAST, "callbacks=[]", *overrides], env, tmp_path)
    message = expect_error(result, "train", pattern, tmp_path / "runs", before)
    assert message.startswith(f"MNIST file {raw / name} "), message


TRAIN_TARGETS = {
    "layer=dense_9": r"unknown layer 'dense_9' in MnistMLP",
    "units=0-600": r"unit 5\d\d is out of range: dense_1 has 512 units",
}


@pytest.mark.parametrize("case", list(TRAIN_TARGETS))
def test_train_wrong_layer_or_units_fails_before_training(cli, tmp_path, case):
    write_idx(tmp_path / "data" / "MNIST" / "raw")
    env = base_env(INTERP_DATA_DIR=str(tmp_path / "data"))
    before = run_folders(tmp_path / "runs")
    started = time.monotonic()
    result = cli(["train", *TRAIN_FAST, case], env, tmp_path)
    assert time.monotonic() - started < 60, f"took {time.monotonic() - started:.0f} s\n{result}"
    assert not list(tmp_path.glob("runs/**/*.ckpt")), "a checkpoint was written: training ran"
    expect_error(result, "train", TRAIN_TARGETS[case], tmp_path / "runs", before)


def test_train_resume_latest_without_checkpoint(cli, trained, tmp_path):
    _, env, _ = trained
    shutil.copytree(trained[0] / "runs", tmp_path / "runs")  # another experiment's checkpoint must not count
    before = run_folders(tmp_path / "runs")
    result = cli(["train", *TRAIN_FAST, "callbacks=[]", "resume=latest", "experiment=fresh"], env, tmp_path)
    expect_error(result, "train", r"no checkpoint found for experiment 'fresh'.*train first", tmp_path / "runs", before)


# --- hardening, round two: what the CLI writes and removes ----------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["precious", "."])
def test_a_failed_run_never_removes_a_folder_that_existed_before(cli, trained, tmp_path, target):
    """``hydra.run.dir=<the user's folder>`` (even ``.``) is refused before anything is written,
    and nothing of the folder goes away."""
    _, env, ckpt = trained
    cwd = tmp_path / "work"
    (cwd / "precious").mkdir(parents=True)
    (cwd / "precious" / "important.txt").write_text("x")
    (cwd / "code.py").write_text("print('mine')")
    before = snapshot(cwd)
    result = cli(["visualize", f"ckpt={ckpt}", "units=9999", f"hydra.run.dir={target}"], env, cwd)
    expect_error(result, "visualize", rf"hydra\.run\.dir={re.escape(target)}: .* is not empty", cwd / "runs", set())
    assert snapshot(cwd) == before


def test_an_empty_folder_given_as_run_dir_is_kept_after_a_failure(cli, trained, tmp_path):
    _, env, ckpt = trained
    (tmp_path / "mine").mkdir()
    result = cli(["visualize", f"ckpt={ckpt}", "units=9999", "hydra.run.dir=mine"], env, tmp_path)
    expect_error(result, "visualize", r"unit 9999 is out of range", tmp_path / "runs", set())
    assert (tmp_path / "mine").is_dir()


def test_a_run_never_writes_into_an_existing_run(cli, trained, tmp_path):
    cwd, env, ckpt = trained
    run = ckpt.parent.parent
    before = snapshot(run)
    args = ["visualize", f"ckpt={ckpt}", "callbacks=[featvis]", "units=0-3", "steps=4", f"hydra.run.dir={run}"]
    result = cli(args, env, cwd)
    expect_error(
        result, "visualize", r"holds a run; give a new or empty folder", cwd / "runs", run_folders(cwd / "runs")
    )
    assert snapshot(run) == before


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("experiment=../../escape", r"^experiment='\.\./\.\./escape' must be a plain folder name"),
        ("experiment=..", r"^experiment='\.\.' must be a plain folder name"),
        ("experiment=" + "x" * 300, r"^experiment is 300 characters long; at most 100$"),
        ("runs_dir=", r"^runs_dir must not be empty"),
    ],
)
def test_runs_never_escape_runs_dir(cli, trained, tmp_path, override, pattern):
    _, env, ckpt = trained
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    result = cli(["visualize", f"ckpt={ckpt}", "units=0", "steps=2", override], env, cwd)
    expect_error(result, "visualize", pattern, cwd / "runs", run_folders(cwd / "runs"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"], "something was written outside the run"


def test_a_runs_dir_that_cannot_be_made_is_one_line(cli, trained, tmp_path):
    """(As root a read-only folder is still writable, so a file stands in the way instead.)"""
    _, env, ckpt = trained
    (tmp_path / "runs").write_text("a file, not a folder")
    result = cli(["visualize", f"ckpt={ckpt}", "units=0"], env, tmp_path)
    assert "Traceback" not in result.stderr and result.returncode == 2, result
    assert re.fullmatch(r"interp visualize: error: cannot create the runs folder runs/visualize: .+\n", result.stderr)


def _copy_run(real: Path, dest: Path, config_text: str) -> Path:
    run = dest / "runs" / "copied" / "2020-01-01_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copyfile(real, run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_text(config_text)
    return run / "checkpoints" / "last.ckpt"


def test_a_loaded_config_never_runs_a_side_effecting_resolver(cli, trained, tmp_path):
    cwd, env, real = trained
    where = tmp_path / "some" / "where"
    text = (real.parent.parent / "config.yaml").read_text() + f"note: ${{unique_dir:{where}}}\n"
    ckpt = _copy_run(real, tmp_path, text)
    result = cli(["visualize", f"ckpt={ckpt}", "units=0", "steps=2"], env, cwd)
    expect_error(
        result, "visualize", r"note holds an interpolation \$\{\.\.\.\}", cwd / "runs", run_folders(cwd / "runs")
    )
    assert not where.exists() and not where.parent.exists()


def test_a_yaml_alias_bomb_in_config_is_refused_at_once(cli, trained, tmp_path):
    cwd, env, real = trained
    bomb = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        bomb.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    text = "\n".join(bomb) + "\n" + (real.parent.parent / "config.yaml").read_text()
    ckpt = _copy_run(real, tmp_path, text)
    result = cli(["visualize", f"ckpt={ckpt}", "units=0", "steps=2"], env, cwd, timeout=60)
    expect_error(result, "visualize", r"uses a YAML alias \(\*a0\)", cwd / "runs", run_folders(cwd / "runs"))


def test_a_checkpoint_with_non_finite_weights_names_the_tensor(cli, trained, tmp_path):
    import torch

    cwd, env, real = trained
    ckpt = torch.load(real, weights_only=True)
    ckpt["state_dict"]["dense_2.weight"][3, 4] = float("nan")
    path = tmp_path / "nan.ckpt"
    torch.save(ckpt, path)
    result = cli(["visualize", f"ckpt={path}", "units=0"], env, cwd)
    expect_error(
        result,
        "visualize",
        r"its weights are not finite: dense_2\.weight holds NaN or inf",
        cwd / "runs",
        run_folders(cwd / "runs"),
    )


def test_hyperparameters_that_do_not_fit_the_weights_fail_before_allocating(cli, trained, tmp_path):
    import torch

    cwd, env, real = trained
    ckpt = torch.load(real, weights_only=True)
    ckpt["hyper_parameters"]["hidden"] = 10**9
    run_ckpt = _copy_run(real, tmp_path, (real.parent.parent / "config.yaml").read_text())
    torch.save(ckpt, run_ckpt)
    result = cli(["visualize", f"ckpt={run_ckpt}", "units=0"], env, cwd)
    expect_error(
        result,
        "visualize",
        r"model\.hidden: 1000000000 must be a whole number from 1 to 65536",
        cwd / "runs",
        run_folders(cwd / "runs"),
    )


def test_latest_follows_a_symlinked_run(cli, trained, tmp_path):
    _, env, real = trained
    (tmp_path / "runs").mkdir()
    os.symlink(real.parent.parent.parent, tmp_path / "runs" / "linked")
    result = cli(["visualize", "ckpt=latest", "units=9999"], env, tmp_path)
    expect_error(result, "visualize", r"unit 9999 is out of range", tmp_path / "runs", run_folders(tmp_path / "runs"))


def test_a_named_pipe_as_checkpoint_is_not_called_missing(cli, trained, tmp_path):
    cwd, env, _ = trained
    os.mkfifo(tmp_path / "pipe")
    result = cli(["visualize", f"ckpt={tmp_path / 'pipe'}", "units=0"], env, cwd)
    expect_error(
        result,
        "visualize",
        r"is not a regular file \(a pipe, socket or device\?\)",
        cwd / "runs",
        run_folders(cwd / "runs"),
    )


# --- hardening, round two: Hydra's and OmegaConf's own errors -------------------------------------

HYDRA_ERRORS = {
    "comma": (["visualize", "units=3,3"], r"^units=3,3: a comma makes Hydra read a sweep; quote the value"),
    "no-callback": (
        ["visualize", "callbacks=[nonexistent]"],
        r"^callbacks: there is no 'nonexistent': choose from atlas, ",
    ),
    "train-steps": (["train", "steps=5"], r"^steps is not a setting of `train`; it is a setting of `visualize`$"),
    "unset-env": (
        ["visualize", "units=${oc.env:INTERP_UNSET_VARIABLE}"],
        r"^the config does not resolve: .*INTERP_UNSET",
    ),
    "self-reference": (["visualize", "units=${units}"], r"^the config does not resolve: .*Recursive interpolation"),
    "non-ascii": (["visualize", "image=café.png"], r"^cannot read an override .*quote values"),
}


@pytest.mark.parametrize("case", list(HYDRA_ERRORS))
def test_hydra_and_omegaconf_errors_are_one_line(cli, trained, case):
    cwd, env, _ = trained
    argv, pattern = HYDRA_ERRORS[case]
    before = run_folders(cwd / "runs")
    result = cli([*argv, "ckpt=latest"] if argv[0] == "visualize" else argv, env, cwd)
    expect_error(result, argv[0], pattern, cwd / "runs", before)


@pytest.mark.parametrize("argv", [["train", "--help"], ["visualize", "--cfg", "job"], ["atlas", "--help"]])
def test_help_and_cfg_keep_working(cli, tmp_path, argv):
    result = cli(argv, base_env(), tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result
    assert {"train": "callbacks", "visualize": "units:", "atlas": "usage: python -m interp atlas"}[
        argv[0]
    ] in result.stdout


def test_train_refuses_a_learning_rate_that_is_not_a_number(cli, tmp_path):
    write_idx(tmp_path / "data" / "MNIST" / "raw")
    env = base_env(INTERP_DATA_DIR=str(tmp_path / "data"))
    result = cli(["train", *TRAIN_FAST, "callbacks=[]", "model.lr=nan"], env, tmp_path)
    expect_error(result, "train", r"^model\.lr=nan: must be a finite number >= 0$", tmp_path / "runs", set())


# --- hardening, round two: a full disk and Ctrl-C ---------------------------------------------------


def test_a_full_disk_is_one_line_and_keeps_what_the_run_wrote(tmp_path):
    """``ulimit -f``: writing the checkpoint fails with EFBIG. One line, exit 2, and the run
    folder (its events were written) stays."""
    import resource

    write_idx(tmp_path / "data" / "MNIST" / "raw")
    env = base_env(INTERP_DATA_DIR=str(tmp_path / "data"))
    limit = 200_000  # bytes: the events and configs fit, the 2.7 MB checkpoint does not

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run_cli(["train", *TRAIN_FAST, "callbacks=[]"], env, tmp_path, timeout=300, preexec_fn=small_files)
    assert "Traceback" not in proc.stderr and proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("interp train: error: ")]
    assert len(errors) == 1 and "out of space: a file grew past the size limit" in errors[0], proc.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "mnist_mlp").iterdir()
    assert list(run.glob("events.out.tfevents.*")), "the run that wrote events was removed"


def test_visualize_stops_on_ctrl_c_with_one_line(trained, tmp_path):
    import signal

    _, env, ckpt = trained
    args = ["visualize", f"ckpt={ckpt}", "callbacks=[featvis]", "units=0-63"]
    proc = start_cli([*args, "steps=100000", "views=[plain]", "experiment=stopped"], env, tmp_path)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the work has started
        if line.startswith("interp visualize:"):
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("feature", "render"))]
    assert lines[-1].startswith("interrupted by SIGINT: what was written so far is in "), err[-3000:]


def test_atlas_is_a_hydra_app_that_writes_nothing_of_its_own(cli, trained, tmp_path, tmp_path_factory):
    """``atlas`` takes Hydra overrides like the other commands: an unknown key is one line, and it
    writes no run folder, log or ``.hydra`` of its own in the working folder."""
    _, env, real = trained
    # a run without interpretation results: the checkpoint and config of the trained run, nothing else
    ckpt = _copy_run(real, tmp_path_factory.mktemp("bare_run"), (real.parent.parent / "config.yaml").read_text())
    result = cli(["atlas", f"ckpt={ckpt}", "steps=3"], env, tmp_path)
    expect_error(result, "atlas", r"^steps is not a setting of `atlas`", tmp_path / "runs", set())
    result = cli(["atlas", f"ckpt={ckpt}"], env, tmp_path)  # a run without results: one line
    expect_error(result, "atlas", r"run the featvis or topk interpretation first", tmp_path / "runs", set())
    assert not list(tmp_path.iterdir()), "atlas wrote into the working folder"
