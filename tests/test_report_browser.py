"""The HTML report in a real headless Chromium (Debian's ``chromium`` package).

The browser is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so no websocket client is
needed. Checked: the page loads with no console error, no uncaught exception, no failed or blocked
request and no request that leaves the page (everything is a ``data:`` URL or the file itself); every
figure (``img``) decodes to a non-zero natural size; the full-page screenshot is a non-empty PNG. The
checker is itself checked on pages with a deliberate ``console.error``, an uncaught exception and a
missing image. Screenshots go to ``$TRAJLAB_TEST_ARTIFACTS`` (default: the test's tmp folder).

Install the browser with ``apt-get install -y chromium chromium-driver`` (Debian); without
``/usr/bin/chromium`` the tests are skipped.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajlab import cli

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--remote-debugging-pipe",
]
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (Debian: apt-get install -y chromium chromium-driver)"
)


@dataclass
class PageResult:
    """What one page load showed: console errors (console.error, uncaught exceptions, failed loads,
    blocked requests), every request's URL, the images' natural sizes, and a full-page PNG."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    screenshot: bytes = b""
    value: object = None


class Browser:
    """A headless Chromium driven over the DevTools pipe; ``load(url)`` opens a page in a fresh tab."""

    def __init__(self, profile: Path, log: Path, timeout: float = 60.0):
        self.timeout = timeout
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # Chromium reads commands on fd 3 and writes replies and events on fd 4. The ends are
        # moved to fds >= 10 (so that neither is 3 or 4) and bash maps them there: no preexec_fn,
        # so no Python code runs in a forked copy of this multithreaded (JAX) process.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_read, from_browser_write)]
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._stderr = open(log, "wb")
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{high[0]} 4>&{high[1]} {high[0]}<&- {high[1]}>&-',
             str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr, pass_fds=high,
        )
        for fd in high:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []

    # -- protocol ---------------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message from Chromium in time")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    self._stderr.flush()
                    log = Path(self._stderr.name).read_text(errors="replace").strip().splitlines()[-5:]
                    raise RuntimeError(
                        f"Chromium closed the DevTools pipe (exit code {self.process.poll()}); its log ends:\n"
                        + "\n".join(log)
                    )
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_event(self, method: str, session: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self._events):
            self._events.append(self._read_message(deadline))

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    # -- one page ---------------------------------------------------------------------------------

    def load(self, url: str, width: int = 1280, height: int = 900, expression: str | None = None) -> PageResult:
        """Open ``url`` in a new tab, wait for its load event, and collect a :class:`PageResult`
        (``value``: what ``expression``, if given, evaluates to once the page has loaded)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session,
        )
        self._events.clear()
        self.send("Page.navigate", {"url": url}, session)
        self._wait_event("Page.loadEventFired", session, self.timeout)
        self._drain(0.5)  # late errors (timers, image decoding)
        images = self.send(
            "Runtime.evaluate",
            {
                "expression": "JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, "
                "complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, "
                "src: i.currentSrc.slice(0, 40)})))",
                "returnByValue": True,
            },
            session,
        )["result"]["value"]
        metrics = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = self.send(
            "Page.captureScreenshot",
            {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1},
            },
            session,
        )["data"]
        result = PageResult(images=json.loads(images), screenshot=base64.b64decode(shot))
        if expression is not None:
            result.value = self.send(
                "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
            )["result"].get("value")
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                texts = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
                result.errors.append("console." + params["type"] + ": " + " ".join(texts))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                result.errors.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                result.errors.append("log: " + params["entry"].get("text", ""))
            elif method == "Network.loadingFailed":
                result.errors.append(f"request failed: {params.get('errorText')} {params.get('blockedReason', '')}")
            elif method == "Network.requestWillBeSent":
                result.requests.append(params["request"]["url"])
        self.send("Target.closeTarget", {"targetId": target})
        return result

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._stderr.close()


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("TRAJLAB_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory, artifacts):
    browser = Browser(tmp_path_factory.mktemp("chromium-profile"), artifacts / "chromium.log")
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html of a tiny saxe-dynamics sweep (one seed, two init scales: two runs, three figures)."""
    out = tmp_path_factory.mktemp("browser") / "saxe-dynamics"
    runner = CliRunner()
    result = runner.invoke(
        cli.app,
        ["run", "saxe-dynamics", "--quick", "--set", "seed=0", "--no-figures", "--no-progress", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output + result.stderr
    result = runner.invoke(cli.app, ["report", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    return out / "report.html"


# --- the checker catches what it must ---------------------------------------------------------------

BROKEN_PAGES = {
    "console_error": ("<script>console.error('deliberate console error')</script>", "deliberate console error"),
    "exception": ("<script>throw new Error('deliberate exception')</script>", "deliberate exception"),
    "missing_image": ('<img src="no-such-figure.png" alt="missing">', "no-such-figure.png"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_PAGES))
def test_checker_sees_console_errors(browser, tmp_path, name):
    body, words = BROKEN_PAGES[name]
    page = tmp_path / f"{name}.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>x</title></head><body>{body}</body></html>")
    result = browser.load(page.as_uri())
    assert result.errors, f"no console error seen on a page with {name}"
    if name == "missing_image":
        assert any(words in url for url in result.requests)
        assert [image["naturalWidth"] for image in result.images] == [0]
    else:
        assert any(words in error for error in result.errors), result.errors


def test_checker_passes_a_clean_page(browser, tmp_path):
    page = tmp_path / "clean.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>x</title></head><body>"
                    "<script>console.log('fine')</script><p>ok</p></body></html>")
    result = browser.load(page.as_uri())
    assert result.errors == []
    assert result.screenshot.startswith(PNG)


# --- the report -------------------------------------------------------------------------------------


def test_report_loads_cleanly_with_its_figures(browser, report, artifacts):
    result = browser.load(report.as_uri())
    (artifacts / "report.png").write_bytes(result.screenshot)

    assert result.errors == [], result.errors
    # Nothing but the file itself and its data: URLs is requested (the page is self-contained).
    outside = [url for url in result.requests if not url.startswith("data:") and url != report.as_uri()]
    assert outside == []

    assert [image["alt"] for image in result.images] == ["mode_strengths", "mode_error", "mode_table"]
    for image in result.images:
        assert image["complete"] and image["src"].startswith("data:image/png;base64,"), image
        assert image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image

    assert result.screenshot.startswith(PNG) and len(result.screenshot) > 10_000
    width = int.from_bytes(result.screenshot[16:20], "big")
    height = int.from_bytes(result.screenshot[20:24], "big")
    assert width >= 1000 and height > 900, (width, height)  # the whole page, not only the viewport


def test_following_a_run_link_opens_its_config(browser, report):
    """The final table links each run id to its config's <details>, which the page's script opens."""
    import re

    run_id = re.search(r'<a href="#run-([0-9a-f]+)">', report.read_text()).group(1)
    closed = browser.load(report.as_uri(), expression=f"document.getElementById('run-{run_id}').open")
    opened = browser.load(report.as_uri() + f"#run-{run_id}", expression=f"document.getElementById('run-{run_id}').open")
    assert closed.errors == [] and opened.errors == []
    assert (closed.value, opened.value) == (False, True)
