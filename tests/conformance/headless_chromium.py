"""Headless Chromium (Debian's ``chromium`` package) for the conformance report's tests.

Chromium missing skips the test that asks for it, except under ``CI=true`` where it fails it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

_CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{message}; CI=true requires the browser tests", pytrace=False)
        pytest.skip(message)
    return found


def browse(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load ``page`` headless; return what the command printed and the console messages."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [m.group(1) for m in map(_CONSOLE.search, done.stderr.splitlines()) if m]
    return done.stdout, console
