"""A file through the whole bridge, Jira to ServiceNow, by ``usm-bridge sync --once``: the
command's peak memory at 1 MiB and at 100 MiB, and its time.

Run: ``.venv/bin/python bench/bench_attachment_flow.py [--sizes 1,100]``

Facilities' Jira (Cloud simulator) and IT's ServiceNow (``sc_req_item``) run in child
processes (``sim_processes``), on one SQLite store in a temporary folder, with the shipped
mappings (their attachment cap raised to 200 MiB, ServiceNow's own limit being 1 GiB). For
each size a person opens a service request in Jira, and a ``sync --once`` opens IT's requested
item (the command's peak with no file: the baseline); then the person attaches a file of
random bytes, and the measured ``sync --once`` reads it (intake: downloaded, hashed, sniffed,
spooled), routes it, downloads it again into the spool and uploads it to ServiceNow.

Reported per size: the measured command's wall seconds and peak resident memory (``ru_maxrss``
of that child alone, from ``wait4``), the baseline's, and whether the bytes ServiceNow holds
have the file's SHA-256. Flat memory means the peak does not follow the file's size.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from bench_attachment_simulators import make_file
from requests_toolbelt import MultipartEncoder
from sim_processes import JIRA_PROJECT, JiraSimulatorProcess, ServiceNowSimulatorProcess

# Found, not imported: this process stays small (see sync_once).
_SPEC = importlib.util.find_spec("usm_bridge")
assert _SPEC is not None and _SPEC.submodule_search_locations
SHIPPED_MAPPINGS_DIR = Path(next(iter(_SPEC.submodule_search_locations))) / "data" / "mappings"
_CAP = "200MiB"
_MIB = 1 << 20


def _mapping(folder: Path, name: str) -> Path:
    text = (SHIPPED_MAPPINGS_DIR / name).read_text(encoding="utf-8")
    assert "max_size: 25MiB" in text, name
    path = folder / name
    path.write_text(text.replace("max_size: 25MiB", f"max_size: {_CAP}"), encoding="utf-8")
    return path


def write_config(
    folder: Path, jira: JiraSimulatorProcess, snow: ServiceNowSimulatorProcess
) -> Path:
    jira_settings = {k: v for k, v in jira.settings().items() if k != "page_size"}
    snow_settings = {"instance_url": snow.base_url, "tables": ["sc_req_item"],
                     "username": snow.username, "password": snow.password}  # fmt: skip
    instances = {
        "facilities-jira": ("facilities", "jira", "jira-service-management.yaml", jira_settings),
        "it-snow": ("it", "servicenow", "servicenow-sc-req-item.yaml", snow_settings),
    }
    store = f"sqlite:///{folder / 'bridge.db'}"
    lines = [f"[store]\nurl = {json.dumps(store)}",
             '[units.facilities]\ntitle = "Facilities"\n[units.it]\ntitle = "IT"']  # fmt: skip
    for name, (unit, kind, mapping, settings) in instances.items():
        lines += [f"[instances.{name}]", f'unit = "{unit}"', f'kind = "{kind}"',
                  f"mapping = {json.dumps(str(_mapping(folder, mapping)))}",
                  f"[instances.{name}.settings]",
                  *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]  # fmt: skip
    lines += ['[[routes]]\nfrom = "facilities"\nto = "it"',
              'when = { call_type = ["service_request"] }']  # fmt: skip
    path = folder / "usm-bridge.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sync_once(config: Path, folder: Path) -> tuple[float, float]:
    """One ``usm-bridge sync --once``: its wall seconds and its peak RSS in MiB.

    Linux counts in a child's ``ru_maxrss`` the pages it had between ``fork`` and ``exec``, that
    is this process's resident size: measured first, it must stay below the command's (it is
    printed), or the figure would be this process's, not the command's.
    """
    own = status_mib("VmRSS")
    if own > 60:
        raise RuntimeError(f"the benchmark itself holds {own:.0f} MiB")
    began = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "usm_bridge", "sync", "--once", "-c", str(config)],
        cwd=folder, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"sync --once exited {process.returncode}")
    return seconds, usage.ru_maxrss / 1024


def status_mib(field: str) -> float:
    """A memory figure of this process (``VmRSS``: now), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def snow_file_sha(snow: ServiceNowSimulatorProcess, summary: str) -> list[str]:
    """The SHA-256 of each file on the requested item named ``summary``, read back."""
    auth = (snow.username, snow.password)

    def rows(path: str, query: str) -> list[dict[str, Any]]:
        got = requests.get(f"{snow.base_url}/api/now/{path}", auth=auth, timeout=60,
                           params={"sysparm_query": query})  # fmt: skip
        return list(got.json()["result"])

    [item] = rows("table/sc_req_item", f"short_description={summary}")
    listed = {"result": rows("attachment", f"table_sys_id={item['sys_id']}")}
    found = []
    for entry in listed["result"]:
        digest = hashlib.sha256()
        with requests.get(entry["download_link"], auth=auth, stream=True, timeout=60) as got:
            for chunk in got.iter_content(1 << 16):
                digest.update(chunk)
        found.append(digest.hexdigest())
    return found


def run(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-attachment-flow-") as tmp,
        JiraSimulatorProcess(0, "--upload-limit", str(300 * _MIB)) as jira,
        ServiceNowSimulatorProcess(0) as snow,
    ):
        folder = Path(tmp)
        config = write_config(folder, jira, snow)
        person = requests.Session()
        person.auth = (jira.email, jira.token)
        api = f"{jira.base_url}/rest/api/3"
        for mib in sizes:
            summary = f"Onboarding form of {mib} MiB"
            created = person.post(f"{api}/issue", timeout=60, json={"fields": {
                "project": {"key": JIRA_PROJECT}, "summary": summary,
                "issuetype": {"name": "[System] Service request"}}})  # fmt: skip
            created.raise_for_status()
            baseline = sync_once(config, folder)  # IT's requested item, no file yet
            path, sha = make_file(folder, mib)
            with path.open("rb") as content:
                # Streamed: this process stays small (see sync_once on why that matters).
                body = MultipartEncoder({"file": (f"form-{mib}.pdf", content, "application/pdf")})
                person.post(f"{api}/issue/{created.json()['key']}/attachments", data=body,
                            timeout=300, headers={"X-Atlassian-Token": "no-check",
                                                  "Content-Type": body.content_type},
                            ).raise_for_status()  # fmt: skip
            path.unlink()
            seconds, peak = sync_once(config, folder)
            copies = snow_file_sha(snow, summary)
            rows.append({"mib": mib, "seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1),
                         "baseline_seconds": round(baseline[0], 2),
                         "baseline_peak_rss_mib": round(baseline[1], 1),
                         "copies": len(copies), "sha256_equal": copies == [sha]})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100", help="file sizes in MiB, comma-separated")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}", flush=True)
    print(f"this process: {status_mib('VmRSS'):.1f} MiB resident", flush=True)
    run([int(s) for s in args.sizes.split(",")])
    print(f"load average: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
