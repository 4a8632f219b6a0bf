"""Debian's headless Chromium driven by selenium through Debian's chromium-driver (never a downloaded driver)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def require_chromium() -> None:
    """Skip without the Debian packages (a fail under CI, where scripts/setup.sh installs them)."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = "Debian chromium + chromium-driver are not installed (scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def start_chromium(log: Path, *, size: str = "1280,900"):
    require_chromium()
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must never try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={size}",
                "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=str(log)))
    driver.set_page_load_timeout(120)
    return driver
