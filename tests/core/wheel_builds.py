"""The wheels of the core and of every connector distribution in this repository, built once
per session (``wheels`` in tests/core/conftest.py) for the packaging tests.

pip builds them from copies of the sources, so the tree gets no build/ folders.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: distribution name (as in wheel file names) -> its source folder.
DISTRIBUTIONS = {
    "usm_bridge": ROOT,
    "usm_bridge_email": ROOT / "connectors" / "email",
    "usm_bridge_jira": ROOT / "connectors" / "jira",
    "usm_bridge_servicenow": ROOT / "connectors" / "servicenow",
    "usm_bridge_acme": ROOT / "tests" / "plugins" / "thirdparty_connector",
}
_SKIPPED = shutil.ignore_patterns(
    ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "bench", "docs",
    "connectors", "demo-run", "test-artifacts",
)  # fmt: skip


def build_wheels(sources: Path, out: Path) -> dict[str, Path]:
    """Build every distribution's wheel into ``out``; distribution name -> wheel file."""
    copies = []
    for name, folder in DISTRIBUTIONS.items():
        copy = sources / name
        shutil.copytree(folder, copy, ignore=_SKIPPED)
        copies.append(str(copy))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), *copies],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    built = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    assert sorted(built) == sorted(DISTRIBUTIONS)
    return built
