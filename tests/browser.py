"""Headless Chromium for the tests of pages: Debian's ``chromium`` and ``chromium-driver``, which CI installs
(.ci/run); elsewhere the tests that need them are skipped. Selenium is pointed at both binaries, so Selenium
Manager never runs and nothing is downloaded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

MISSING = (
    f"headless Chromium is not installed ({CHROMIUM} and {CHROMEDRIVER}; "
    "on Debian: apt-get install chromium chromium-driver)"
)


@pytest.fixture
def need_chromium() -> None:
    """Skipped on a machine without Chromium; in CI, which installs it (.ci/run), its absence is a failure."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        if os.environ.get("CI"):
            pytest.fail(f"CI must install Chromium: {MISSING}")
        pytest.skip(MISSING)


CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
)  # fmt: skip


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, need_chromium: None) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: the paths below already skip Selenium Manager
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    flags = [*CHROMIUM_FLAGS, "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chromium'}"]
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
