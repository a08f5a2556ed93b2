"""A headless Chromium driven over the DevTools protocol, for tests of static HTML pages.

No WebDriver: Chromium is started with ``--remote-debugging-port=0`` and spoken to over one
WebSocket (the ``websocket-client`` package). Install Chromium with
``scripts/install_chromium.sh`` (Debian's ``chromium`` package).

Example::

    with Browser() as browser:
        page = browser.open(Path("atlas/index.html"))
        assert not page.console_errors
        assert all(img["naturalWidth"] > 0 for img in page.images)
        png = browser.screenshot()             # PNG bytes of the viewport
        browser.press("ArrowRight")            # a real key event
        browser.url()                          # where the page went
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_KEYS = {  # key -> (code, windows virtual key code)
    "ArrowLeft": ("ArrowLeft", 37),
    "ArrowUp": ("ArrowUp", 38),
    "ArrowRight": ("ArrowRight", 39),
    "ArrowDown": ("ArrowDown", 40),
    "Enter": ("Enter", 13),
    "Escape": ("Escape", 27),
}


def find_chromium() -> str | None:
    """The Chromium binary: ``$CHROMIUM`` if set, else the first of :data:`CANDIDATES` on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if (Path(env).exists() or shutil.which(env)) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


@dataclass
class PageReport:
    """What :meth:`Browser.open` saw on a page once it had loaded."""

    url: str
    title: str
    console_errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)  # {"src", "naturalWidth", "naturalHeight", "complete"}
    links: list[str] = field(default_factory=list)  # absolute URLs of <a href>, <link href>, <script src>


_COLLECT = """
(() => {
  const abs = (u) => new URL(u, document.baseURI).href;
  const links = [];
  document.querySelectorAll('a[href]').forEach(a => links.push(a.href));
  document.querySelectorAll('link[href]').forEach(l => links.push(abs(l.getAttribute('href'))));
  document.querySelectorAll('script[src]').forEach(s => links.push(abs(s.getAttribute('src'))));
  const images = Array.from(document.images).map(i => ({
    src: i.currentSrc || i.src, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, complete: i.complete}));
  return JSON.stringify({title: document.title, url: location.href, links: links, images: images});
})()
"""

_IMAGES_SETTLED = "Array.from(document.images).every(i => i.complete)"


class Browser:
    """One headless Chromium with one tab. Use as a context manager (or call :meth:`close`)."""

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 900, timeout: float = 30.0):
        import websocket  # websocket-client

        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("chromium not found: run scripts/install_chromium.sh (or set $CHROMIUM)")
        self.timeout = timeout
        self.width, self.height = width, height
        self._ids = itertools.count(1)
        self._events: list[dict] = []
        self._profile = tempfile.mkdtemp(prefix="interp-chromium-")
        args = [
            self.binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--mute-audio",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--remote-allow-origins=*",
            "--remote-debugging-port=0",
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # stderr goes to a file: a pipe nobody reads could fill up and stall the browser
        self._log = open(Path(self._profile) / "chromium.log", "wb")
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            port = self._wait_port()
            ws_url = self._page_target(port)
            self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        except Exception:
            self.close()
            raise

    # --- plumbing ------------------------------------------------------------------------------
    def _wait_port(self) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (Path(self._profile) / "chromium.log").read_bytes().decode(errors="replace")[-2000:]
                raise BrowserError(f"chromium exited with code {self._proc.returncode}: {err}")
            if marker.exists():
                lines = marker.read_text().splitlines()
                if lines and lines[0].strip().isdigit():
                    return int(lines[0])
            time.sleep(0.05)
        raise BrowserError("chromium did not open its DevTools port in time")

    def _page_target(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.load(r)
            for t in targets:
                if t.get("type") == "page" and t.get("webSocketDebuggerUrl"):
                    return t["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise BrowserError("chromium has no page target")

    def _recv(self, deadline: float) -> dict:
        self._ws.settimeout(max(0.05, deadline - time.monotonic()))
        return json.loads(self._ws.recv())

    def send(self, method: str, params: dict | None = None) -> dict:
        """Send one DevTools command and return its result (events seen meanwhile are kept)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + self.timeout
        while True:
            if time.monotonic() > deadline:
                raise BrowserError(f"no answer to {method}")
            msg = self._recv(deadline)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)

    def _wait_event(self, method: str, since: int = 0) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for ev in self._events[since:]:
                if ev["method"] == method:
                    return ev
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {method}")
            msg = self._recv(deadline)
            if "method" in msg:
                self._events.append(msg)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise BrowserError(
                f"JavaScript error: {res['exceptionDetails'].get('text')}: "
                f"{res['exceptionDetails'].get('exception', {}).get('description')}"
            )
        return res.get("result", {}).get("value")

    # --- what tests use ---------------------------------------------------------------------
    def open(self, target: str | os.PathLike) -> PageReport:
        """Load a page (a file path or URL), wait for it and its images, and report what it shows."""
        url = (
            Path(target).resolve().as_uri()
            if not str(target).startswith(("file:", "http:", "https:", "about:"))
            else str(target)
        )
        self._events.clear()
        res = self.send("Page.navigate", {"url": url})
        if res.get("errorText"):
            raise BrowserError(f"cannot open {url}: {res['errorText']}")
        self._wait_event("Page.loadEventFired")
        return self.report()

    def report(self) -> PageReport:
        """The state of the current page: console errors since it was opened, images, links."""
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(_IMAGES_SETTLED) and time.monotonic() < deadline:
            time.sleep(0.05)
        data = json.loads(self.evaluate(_COLLECT))
        return PageReport(
            url=data["url"],
            title=data["title"],
            console_errors=self.console_errors(),
            images=data["images"],
            links=data["links"],
        )

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen since the last :meth:`open`."""
        self.evaluate("0")  # drain pending events
        out = []
        for ev in self._events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = p.get("args", [])
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}".strip())
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                out.append(f"log: {e.get('text')} {e.get('url', '')}".strip())
        return out

    def url(self) -> str:
        return self.evaluate("location.href")

    def press(self, key: str, wait_navigation: bool = True) -> str:
        """Press and release a key (``ArrowRight``, ...); with ``wait_navigation`` wait for the page the
        key leads to to load. Returns the URL afterwards."""
        code, vk = _KEYS.get(key, (key, 0))
        before = len(self._events)
        common = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
        self.send("Input.dispatchKeyEvent", {"type": "rawKeyDown", **common})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **common})
        if wait_navigation:
            self._wait_event("Page.loadEventFired", since=before)
        return self.url()

    def screenshot(self, path: str | os.PathLike | None = None, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or of the whole page); written to ``path`` when given."""
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            h = int(min(max(size["height"], self.height), 16000))
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": h, "deviceScaleFactor": 1, "mobile": False},
            )
        try:
            data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        finally:
            if full_page:
                self.send(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                )
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            try:
                ws.send(json.dumps({"id": next(self._ids), "method": "Browser.close"}))
            except Exception:
                pass
            try:
                ws.close()
            except Exception:
                pass
            self._ws = None
        if self._proc.poll() is None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def link_to_path(url: str) -> Path | None:
    """The local file a ``file://`` URL names (fragment and query dropped); ``None`` for other schemes."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(unquote(parts.path))


def check_page(browser: Browser, page: Path, root: Path, min_images: int = 1) -> PageReport:
    """Open ``page`` (a static HTML page under ``root``) and check it: no console errors, at least
    ``min_images`` images and every one loaded, every link a file that exists, a screenshot that is not
    blank. Returns what the browser saw."""
    rep = browser.open(page)
    assert rep.console_errors == [], rep.console_errors
    assert len(rep.images) >= min_images
    broken = [i["src"] for i in rep.images if not i["naturalWidth"] > 0]
    assert not broken, f"images that did not load on {page.name}: {broken[:5]}"
    assert rep.links
    for link in rep.links:
        path = link_to_path(link)
        assert path is not None, f"{page.name} links outside the atlas: {link}"
        assert path.exists(), f"{page.relative_to(root)} links to a missing file: {path}"
    png = browser.screenshot()
    from io import BytesIO

    import numpy as np
    from PIL import Image

    arr = np.asarray(Image.open(BytesIO(png)).convert("L"), dtype=np.float32)
    assert arr.shape == (900, 1280)
    assert arr.std() > 15, f"screenshot of {page.name} looks blank (pixel std {arr.std():.1f})"
    return rep
