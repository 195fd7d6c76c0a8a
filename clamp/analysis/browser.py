"""A headless Chromium driven through the DevTools protocol: to check the report page as a person sees it.

Why this file exists: ``index.html`` is judged by what a browser shows (does
the page load without console errors, is every figure decoded and visible,
does clicking a header sort a table), which no HTML parser can tell.  This is
a small client for the Chrome DevTools protocol over a websocket, enough for
the tests and for the README's screenshot; it needs a Chromium binary
(Debian: ``apt-get install chromium``) and ``websocket-client`` (the
``clamp[browser]`` extra; nnsight already depends on it).  No selenium, no
chromedriver: one process, one page.

Example::

    with Browser() as b:
        b.open(Path("results/quickstart/index.html").resolve().as_uri())
        print(b.evaluate("document.title"), b.console_errors())
        b.screenshot("page.png")
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
from pathlib import Path
from typing import Any

from clamp.errors import ConfigError

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The Chromium binary: ``$CLAMP_CHROMIUM`` if set, else the first of the usual names on ``PATH``."""
    env = os.environ.get("CLAMP_CHROMIUM")
    if env:
        return env
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium page (use as a context manager).

    Args:
        width, height: the window size in CSS pixels.
        timeout: seconds to wait for the browser to start, a page to load or a command to answer.
    """

    def __init__(self, *, width: int = 1200, height: int = 900, timeout: float = 60.0) -> None:
        self.width, self.height, self.timeout = width, height, timeout
        self.events: list[dict] = []
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self._ws: Any = None
        self._profile: str | None = None

    # --- lifetime
    def __enter__(self) -> "Browser":
        exe = find_chromium()
        if exe is None:
            raise ConfigError("no Chromium found; install it (Debian: apt-get install -y chromium) or set CLAMP_CHROMIUM.")
        try:
            import websocket  # websocket-client
        except ImportError as e:
            raise ConfigError("the browser check needs websocket-client: pip install 'clamp[browser]'.") from e
        self._profile = tempfile.mkdtemp(prefix="clamp-chromium-")
        args = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--hide-scrollbars", "--remote-debugging-port=0", "--remote-allow-origins=*",
                f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}", "about:blank"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._port()
            pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout).read())
            url = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
            self._ws = websocket.create_connection(url, timeout=self.timeout, suppress_origin=True)
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # noqa: BLE001 - closing a dead socket
                pass
            self._ws = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def _port(self) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Chromium exited with status {self._proc.returncode} before it started")
            if marker.is_file():
                first = marker.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            time.sleep(0.05)
        raise TimeoutError(f"Chromium did not open its DevTools port within {self.timeout:g} s")

    # --- protocol
    def send(self, method: str, **params: Any) -> dict:
        """Send one DevTools command and return its result; events seen meanwhile go to :attr:`events`."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"{method}: no answer within {self.timeout:g} s")

    def _wait_event(self, method: str, since: int) -> dict:
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            for ev in self.events[since:]:
                if ev["method"] == method:
                    return ev
            since = len(self.events)
            msg = json.loads(self._ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"no {method} within {self.timeout:g} s")

    # --- what a person does
    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event (every image decoded or failed by then)."""
        since = len(self.events)
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"could not open {url}: {result['errorText']}")
        self._wait_event("Page.loadEventFired", since)

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its value (JSON-serialisable)."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JavaScript error: {r['exceptionDetails'].get('exception', {}).get('description') or r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """Click the centre of the first element matching ``selector`` with the mouse (scrolled into view first)."""
        rect = self.evaluate(
            f"(function(){{var e=document.querySelector({json.dumps(selector)}); if(!e) return null;"
            "e.scrollIntoView({block:'center'}); var r=e.getBoundingClientRect();"
            "return {x:r.left+r.width/2, y:r.top+r.height/2};})()")
        if rect is None:
            raise LookupError(f"nothing on the page matches {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=rect["x"], y=rect["y"], button="left",
                      clickCount=0 if kind == "mouseMoved" else 1)
        self.evaluate("1")  # let the click's handlers run before the next question

    def console_errors(self) -> list[str]:
        """Errors the page produced so far: uncaught exceptions, ``console.error`` calls, failed loads."""
        out = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", "error"))
        return out

    def screenshot(self, path: str | Path, *, height: int | None = None, scale: float = 1.0) -> Path:
        """Save a PNG of the top of the page (``height`` CSS pixels, default the window), scaled by ``scale``."""
        clip = {"x": 0, "y": 0, "width": self.width, "height": height or self.height, "scale": scale}
        self.evaluate("window.scrollTo(0, 0)")
        r = self.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(r["data"]))
        return path
