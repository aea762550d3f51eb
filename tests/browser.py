"""The explore page in a real headless Chromium (Debian's chromium and chromium-driver, driven by selenium).

Used by tests/test_explore_browser.py, and run by hand for the screenshot in the docs
(`make screenshot` trains the two models it shows first):

    python -m tests.browser RUN [RUN...] --out docs/images/explore.png
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# What works on a machine without a display or outside network: no sandbox as root, no GPU, and none
# of Chromium's background connections (refused here, many at a time).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


class BrowserMissing(Exception):
    """No Chromium, chromedriver or selenium here; the message says which."""


def find_browser() -> tuple[str, str]:
    """The Chromium binary and its chromedriver."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise BrowserMissing("selenium is not installed (pip install -e '.[dev]')") from None
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None)
        raise BrowserMissing(f"{missing} not found (apt-get install chromium chromium-driver)")
    return browser, driver


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium with a fresh profile, closed (and its profile deleted) afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_browser()
    with tempfile.TemporaryDirectory(prefix="vaezoo-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


@contextmanager
def serving(app: Any, timeout: float = 30) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port in a thread; yields the page's address."""
    from vaezoo.explore.server import bind, server, url

    with bind("127.0.0.1", 0) as sock:
        instance = server(app)
        thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not instance.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the explore server did not start")
            time.sleep(0.05)
        try:
            yield url(sock)
        finally:
            instance.should_exit = True
            thread.join(timeout)


def wait_for(driver: Any, script: str, timeout: float = 60) -> Any:
    """Poll a JavaScript expression until it is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(f"return {script};"))


def decode_settled(run: int) -> str:
    """A JavaScript test: the decoded image of `run` shows the code its sliders hold now."""
    section = f'document.querySelector(\'section.run[data-run="{run}"]\')'
    return (f"(() => {{ const s = {section}; if (!s) return false; const img = s.querySelector('.decoded');"
            " const z = [...s.querySelectorAll('.sliders input')].map(e => e.value).join(',');"
            " return img.dataset.z === z && img.complete && img.naturalWidth > 0 ? z : false; })()")


def open_page(driver: Any, url: str, runs: int) -> None:
    """Load the page and wait until every run's first pictures are in."""
    driver.get(url)
    wait_for(driver, "document.body.dataset.ready === 'true'")
    for run in range(runs):
        wait_for(driver, decode_settled(run))
    wait_for(driver, "[...document.querySelectorAll('section.run img')]"
                     ".every(img => img.closest('[hidden]') || (img.complete && img.naturalWidth > 0))")


def decoded_pixels(driver: Any, run: int) -> list[int]:
    """The red channel of the decoded image of `run`, pixel by pixel (its native size, not as drawn)."""
    return driver.execute_script(
        "const img = document.querySelector(`section.run[data-run='${arguments[0]}'] .decoded`);"
        "const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;"
        "const g = c.getContext('2d'); g.drawImage(img, 0, 0);"
        "return Array.from(g.getImageData(0, 0, c.width, c.height).data).filter((_, i) => i % 4 === 0);", run)


def press_on_slider(driver: Any, run: int, dim: int, *keys: str) -> str:
    """Focus a code slider and press keys as a person would; returns the code the page then shows."""
    slider = driver.find_element("css selector", f"section.run[data-run='{run}'] .sliders input:nth-of-type({dim + 1})")
    slider.send_keys(*keys)
    return wait_for(driver, decode_settled(run))


def screenshot(sources: Sequence[Path], out: Path) -> None:
    """The page over `sources`, a slider of each moved, saved as a PNG of the whole page."""
    import base64

    from selenium.webdriver.common.keys import Keys

    from vaezoo.explore.server import explore_app

    width = 40 + 500 * len(sources)  # the columns' widest, side by side
    with serving(explore_app(sources, device="cpu")) as url, chromium(width, 1000) as driver:
        open_page(driver, url, len(sources))
        for run in range(len(sources)):
            press_on_slider(driver, run, 0, *[Keys.ARROW_RIGHT] * 60)
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", type=Path, help="run folders or model files to show")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    screenshot(args.sources, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
