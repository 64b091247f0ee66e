"""A headless Chromium driven over the DevTools protocol: screenshots and in-page measurements
of a dashboard (tests and ``tools/bench_plot.py``).

::

    with Chromium() as browser:                    # Debian's `chromium` (apt-get install chromium)
        browser.open("http://127.0.0.1:5006/")
        browser.wait_for("window.genki && window.genki.frames > 10", timeout=20)
        png = browser.screenshot("shot.png")
        fps = browser.evaluate("window.genki.fps")

The browser runs with ``--headless --no-sandbox --disable-gpu --disable-background-networking``
(plus no sync, no component updates, no first-run tasks), a throw-away profile, and its own
process group, killed on ``close()``. The protocol goes over the browser's local websocket with
tornado's client (tornado comes with bokeh, the plot extra).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--disable-features=Translate,MediaRouter,OptimizationHints",
         "--disable-backgrounding-occluded-windows", "--disable-renderer-backgrounding",
         "--disable-background-timer-throttling")


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    env = os.environ.get("GENKI_CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser with one page (see the module docstring)."""

    def __init__(self, executable: str | None = None, *, width: int = 1300, height: int = 950,
                 user_data_dir: str | Path | None = None, start_timeout: float = 30.0) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError("no Chromium found (apt-get install chromium)")
        self.width, self.height = width, height
        self._tmp = None if user_data_dir else tempfile.TemporaryDirectory(prefix="genki-chr-")
        self.user_data_dir = Path(user_data_dir or self._tmp.name)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self._loop = asyncio.new_event_loop()
        self._ws: Any = None
        self._next_id = 0
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=20_000)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Chromium:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Chromium:
        port_file = self.user_data_dir / "DevToolsActivePort"
        with contextlib.suppress(FileNotFoundError):
            port_file.unlink()
        cmd = [self.executable, *FLAGS, f"--user-data-dir={self.user_data_dir}",
               "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
               f"--window-size={self.width},{self.height}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"{self.executable} exited with {self.proc.returncode}")
            try:
                port = int(port_file.read_text().splitlines()[0])
                break
            except (FileNotFoundError, IndexError, ValueError):
                time.sleep(0.05)
        if port is None:
            self.close()
            raise BrowserError(f"{self.executable} did not open its DevTools port")
        ws_url = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    targets = json.loads(r.read())
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    ws_url = pages[0]["webSocketDebuggerUrl"]
                    break
            except OSError:
                pass
            time.sleep(0.05)
        if ws_url is None:
            self.close()
            raise BrowserError("no page target in the browser")
        from tornado.websocket import websocket_connect

        async def connect() -> Any:
            return await websocket_connect(ws_url, max_message_size=256 * 1024 * 1024)

        self._ws = self._loop.run_until_complete(connect())
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if not self._loop.is_closed():
            self._loop.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ protocol
    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """One DevTools command; its ``result`` (events in between are skipped)."""
        self._next_id += 1
        msg_id = self._next_id
        text = json.dumps({"id": msg_id, "method": method, "params": params})

        async def send() -> None:
            await self._ws.write_message(text)

        self._loop.run_until_complete(send())
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"{method}: no answer within {timeout:g} s")
            raw = self._loop.run_until_complete(self._read(remaining))
            if raw is None:
                raise BrowserError("the browser closed the DevTools connection")
            reply = json.loads(raw)
            if "method" in reply:  # an event (Network.requestWillBeSent, ...): kept for callers
                self.events.append(reply)
                continue
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def _read(self, timeout: float) -> Any:
        return await asyncio.wait_for(self._ws.read_message(), timeout)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def requested_urls(self) -> list[str]:
        """Every URL the page asked for so far (``record_network()`` first)."""
        self.evaluate("0")  # collect the events that arrived meanwhile
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"] + \
            [e["params"]["url"] for e in self.events
             if e.get("method") == "Network.webSocketCreated"]

    def record_network(self) -> None:
        self.call("Network.enable")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.1) -> Any:
        """Evaluate ``expression`` until it is truthy; its value (BrowserError on timeout)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(BrowserError):
                last = self.evaluate(expression)
                if last:
                    return last
            time.sleep(interval)
        raise BrowserError(f"timed out after {timeout:g} s waiting for {expression!r} "
                           f"(last value {last!r})")

    def screenshot(self, path: str | Path | None = None) -> bytes:
        """A PNG of the viewport (also written to ``path``)."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def element_box(self, selector_js: str) -> dict[str, float] | None:
        """``{x, y, width, height}`` of the element a JS expression returns, or None."""
        return self.evaluate(
            f"(() => {{ const el = {selector_js}; if (!el) return null; "
            f"const r = el.getBoundingClientRect(); "
            f"return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }})()")


# JS: where the Bokeh figure named ``panel-<key>`` is, and its plotting frame (the area inside
# the axes), in page pixels. Views live in shadow DOM, so walk the view tree from the roots.
PANEL_BOX_JS = """
(() => {
  if (!window.Bokeh || !Bokeh.documents || !Bokeh.documents.length) return null;
  const model = Bokeh.documents[0].get_model_by_name(%s);
  if (!model) return null;
  const find = (view) => {
    if (view.model === model) return view;
    for (const child of (view.child_views || [])) {
      const found = find(child);
      if (found) return found;
    }
    return null;
  };
  for (const root of Bokeh.index.roots) {
    const view = find(root);
    if (view) {
      const r = view.el.getBoundingClientRect();
      const f = view.frame.bbox;
      return {x: r.x, y: r.y, width: r.width, height: r.height,
              frame: {x: r.x + f.x, y: r.y + f.y, width: f.width, height: f.height}};
    }
  }
  return null;
})()
"""


def panel_box(browser: Chromium, key: str) -> dict[str, Any] | None:
    """Where the dashboard panel of ``key`` is on the page (and its plotting frame)."""
    return browser.evaluate(PANEL_BOX_JS % json.dumps(f"panel-{key}"))
