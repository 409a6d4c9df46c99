"""The web console's browser tests and screenshots: a `conveyor dev` of their own on free
ports, and Debian's Chromium driven by Selenium through chromium-driver."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import free_port

T = TypeVar("T")
WAIT = 60.0
"""How long a page may take to show what a test waits for (a loaded CI machine is slow)."""
EXPECTED_404 = re.compile(r"/v1/tasks:watch\?\S* - Failed to load resource: .* 404")
"""The tasks page asks for the multi-task stream first and polls when it answers 404."""


@dataclass
class Dev:
    """A running `conveyor dev`: its HTTP door's base URL and, when secure, the printed
    admin key and the CA that signed its certificates."""

    url: str
    process: subprocess.Popen[bytes]
    key: str = ""
    ca: Path | None = None

    def http(self, role_key: str = "") -> httpx.Client:
        """A client of the HTTP API, as the console's user would script it."""
        key = role_key or self.key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        verify: Any = ssl.create_default_context(cafile=self.ca) if self.ca else True
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=verify)


@contextlib.contextmanager
def running_dev(root: Path, *args: str) -> Iterator[Dev]:
    """`conveyor dev` with one worker, its doors on free ports, until the block ends."""
    for attempt in range(3):
        started = _start_dev(root / f"dev-{attempt}", args)
        if started is not None:
            break
    else:
        raise AssertionError(
            "conveyor dev did not start: " + (root / "dev-2" / "dev.txt").read_text()[-3000:]
        )
    dev, process = started
    try:
        yield dev
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start_dev(root: Path, args: tuple[str, ...]) -> tuple[Dev, subprocess.Popen[bytes]] | None:
    """A started `conveyor dev`, or None when it lost a port to another process while
    starting (it picks its services' ports before binding them, as others on the machine
    may)."""
    root.mkdir(parents=True)
    gateway, http = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_GATEWAY_LISTEN"] = f"127.0.0.1:{gateway}"
    env["CONVEYOR_HTTP_LISTEN"] = f"127.0.0.1:{http}"
    env["CONVEYOR_METRICS_LISTEN"] = "off"
    out = root / "dev.txt"
    argv = [sys.executable, "-m", "conveyor.cli", "dev", "--workers", "1", *args]
    with out.open("w") as stdout:
        process = subprocess.Popen(
            [*argv, "--data-dir", str(root / "data")],
            env=env,
            cwd=root,
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while "Press Ctrl-C" not in out.read_text():
        if process.poll() is not None:
            assert "address is in use" in out.read_text(), out.read_text()[-3000:]
            return None
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("conveyor dev did not start: " + out.read_text()[-3000:])
        time.sleep(0.2)
    text = out.read_text()
    key = re.search(r"CONVEYOR_API_KEY=(cvk_\S+)", text)
    secure = "--secure" in args
    dev = Dev(
        f"{'https' if secure else 'http'}://127.0.0.1:{http}",
        process,
        key[1] if key else "",
        root / "data" / "tls" / "ca.pem" if secure else None,
    )
    return dev, process


def chromium_paths() -> tuple[str, str] | None:
    """Debian's chromium and chromedriver, when installed (.ci/run installs them)."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


needs_chromium = pytest.mark.skipif(
    chromium_paths() is None and not os.environ.get("CI"),
    reason="apt-get install chromium chromium-driver (CI installs them and never skips)",
)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium that keeps its console's messages for console_errors()."""
    paths = chromium_paths()
    assert paths is not None, "apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    # The secure dev's certificates are signed by its own CA, unknown to Chromium.
    options.accept_insecure_certs = True
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(paths[1]))
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: webdriver.Chrome, *allowed: re.Pattern[str]) -> list[str]:
    """The errors logged in the browser's console since the last call, but the allowed."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        entry["message"]
        for entry in entries
        if entry["level"] == "SEVERE"
        and not any(p.search(entry["message"]) for p in (EXPECTED_404, *allowed))
    ]


def wait_for(driver: webdriver.Chrome, found: Callable[[webdriver.Chrome], T | None]) -> T:
    """What ``found`` returns once it is truthy; a page re-rendering under it is retried."""

    def attempt(d: webdriver.Chrome) -> T | None:
        try:
            return found(d)
        except (StaleElementReferenceException, WebDriverException):
            return None

    result = WebDriverWait(driver, WAIT, poll_frequency=0.2).until(attempt)
    assert result is not None
    return result


def element(driver: webdriver.Chrome, css: str) -> WebElement:
    """The element ``css`` finds, once it is there."""
    return wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, css))


def click_button(scope: webdriver.Chrome | WebElement, text: str) -> None:
    """Clicks the button whose text is ``text``."""
    buttons = scope.find_elements(By.TAG_NAME, "button")
    matching = [b for b in buttons if b.text.strip() == text]
    assert matching, f"no button {text!r} among {[b.text for b in buttons]}"
    matching[0].click()


def buttons_in_main(driver: webdriver.Chrome) -> list[str]:
    """The text of every button of the page's content (the header's sign-out aside)."""
    return [b.text for b in driver.find_elements(By.CSS_SELECTOR, "main button")]
