"""A live TensorBoard server for tests: the real ``tensorboard`` program over a log folder.

::

    with tensorboard_server(run_dir) as url:
        tags = get_json(url, "/data/plugin/images/tags")

The server listens on 127.0.0.1 on a port the operating system picks (``--port 0``); the port
is read from the line TensorBoard prints when it is up. The server and its helper processes
(the fast data loader) run in their own process group, which is ended when the block exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["tensorboard_command", "tensorboard_server", "get", "get_json", "wait_for"]

_URL_LINE = re.compile(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/")

# Requests go straight to 127.0.0.1, never through a proxy named in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tensorboard_command() -> list[str]:
    """The ``tensorboard`` program next to this Python, or ``python -m tensorboard.main``."""
    bindir = Path(sys.executable).parent
    for name in ("tensorboard", "tensorboard.exe"):
        exe = bindir / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return [str(exe)]
    return [sys.executable, "-m", "tensorboard.main"]


def get(url: str, path: str = "", params: dict | None = None, timeout: float = 30.0) -> tuple[bytes, str]:
    """``GET url + path?params``: (body, content type). Raises ``urllib.error.HTTPError`` on non-2xx."""
    full = url.rstrip("/") + path
    if params:
        full += "?" + urllib.parse.urlencode(params)
    with _OPENER.open(full, timeout=timeout) as response:
        return response.read(), response.headers.get("Content-Type", "")


def get_json(url: str, path: str = "", params: dict | None = None, timeout: float = 30.0):
    body, _ = get(url, path, params, timeout)
    return json.loads(body)


def wait_for(check: Callable[[], object], timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError) as exc:  # connection refused, HTTP errors, half-written JSON
            last_error = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the group we created: the server and its data loader
    else:
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=grace)


@contextlib.contextmanager
def tensorboard_server(
    logdir: str | os.PathLike, timeout: float = 90.0, reload_interval: float = 1.0, extra_args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Run TensorBoard over ``logdir`` on 127.0.0.1 and yield its base URL (``http://127.0.0.1:PORT``).

    Waits until the server answers ``/data/runs``; the data may still be loading then (poll
    with :func:`wait_for`). The server is stopped when the block exits, also on errors.
    """
    cmd = tensorboard_command() + [
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--reload_interval",
        str(reload_interval),
        *extra_args,
    ]
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        popen_kw = {"start_new_session": True} if hasattr(os, "killpg") else {}
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, **popen_kw
        )

        def output() -> str:
            log.flush()
            log.seek(0)
            return log.read()

        try:

            def started():
                if proc.poll() is not None:
                    raise RuntimeError(f"tensorboard exited with code {proc.returncode}:\n{output()}")
                match = _URL_LINE.search(output())
                return match.group(1) if match else None

            try:
                url = wait_for(started, timeout, what="tensorboard to print its URL")
                wait_for(
                    lambda: get(url, "/data/runs", timeout=5)[0] is not None,
                    timeout,
                    what="tensorboard to answer /data/runs",
                )
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\ntensorboard output:\n{output()}") from None
            yield url
        finally:
            _stop(proc)
