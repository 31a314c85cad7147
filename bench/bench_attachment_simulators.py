"""The simulators' attachment endpoints with a large file: flat memory, both ways.

Run: ``.venv/bin/python bench/bench_attachment_simulators.py [--mib 100]``

Each simulator runs in its own process (``sim_processes``). A file of ``--mib`` MiB of random
bytes, on disk, is uploaded as a client streaming it from the file would (Jira: the multipart
``POST /issue/{key}/attachments`` with ``X-Atlassian-Token: no-check``, the body encoded as it
is sent by requests-toolbelt's ``MultipartEncoder``, as pycontribs' client does; ServiceNow: the
raw ``POST /api/now/attachment/file``), then downloaded a chunk at a time (Jira: through Cloud's
303 to the media URL; ServiceNow: ``/attachment/{sys_id}/file``) and hashed. Reported per
simulator: seconds each way, and the simulator process's peak resident memory (``VmHWM``)
before the upload and after the download. The simulators keep content in files, so the peak
should grow by a few MiB (the parser's and the socket's chunks), far less than the file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from requests_toolbelt import MultipartEncoder
from sim_processes import JiraSimulatorProcess, ServiceNowSimulatorProcess

_CHUNK = 1 << 20


def peak_rss_mib(pid: int) -> float:
    """A process's peak resident set size (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def make_file(directory: Path, mib: int) -> tuple[Path, str]:
    """A file of random bytes and its SHA-256, written a MiB at a time."""
    path = directory / "large.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(mib):
            block = os.urandom(_CHUNK)
            digest.update(block)
            out.write(block)
    return path, digest.hexdigest()


def download(session: requests.Session, url: str) -> str:
    """Stream ``url``'s body through SHA-256; its hex digest."""
    digest = hashlib.sha256()
    with session.get(url, stream=True, timeout=300) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_content(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def timed(step: Callable[[], str]) -> tuple[str, float]:
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def jira(path: Path, size: int) -> tuple[float, float, float, float, str]:
    with JiraSimulatorProcess(1, "--upload-limit", str(size + 1)) as sim, requests.Session() as s:
        s.auth = (sim.email, sim.token)
        before = peak_rss_mib(sim.process.pid)

        def upload() -> str:
            with path.open("rb") as stream:
                body = MultipartEncoder({"file": (path.name, stream, "application/octet-stream")})
                answer = s.post(
                    f"{sim.base_url}/rest/api/3/issue/IT-1/attachments",
                    data=body,
                    headers={"Content-Type": body.content_type, "X-Atlassian-Token": "no-check"},
                    timeout=300,
                )
            answer.raise_for_status()
            return str(answer.json()[0]["content"])

        content, up = timed(upload)
        digest, down = timed(lambda: download(s, content))
        return before, peak_rss_mib(sim.process.pid), up, down, digest


def servicenow(path: Path, size: int) -> tuple[float, float, float, float, str]:
    with ServiceNowSimulatorProcess(1) as sim, requests.Session() as s:
        s.auth = (sim.username, sim.password)
        before = peak_rss_mib(sim.process.pid)
        incident = s.get(f"{sim.base_url}/api/now/table/incident", timeout=30).json()["result"][0]

        def upload() -> str:
            with path.open("rb") as stream:
                answer = s.post(
                    f"{sim.base_url}/api/now/attachment/file",
                    params={
                        "table_name": "incident",
                        "table_sys_id": incident["sys_id"],
                        "file_name": path.name,
                    },
                    data=stream,
                    headers={"Content-Type": "application/octet-stream"},
                    timeout=300,
                )
            answer.raise_for_status()
            result = answer.json()["result"]
            assert int(result["size_bytes"]) == size
            return str(result["download_link"])

        link, up = timed(upload)
        digest, down = timed(lambda: download(s, link))
        return before, peak_rss_mib(sim.process.pid), up, down, digest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mib", type=int, default=100, help="the file's size in MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path, expected = make_file(Path(scratch), args.mib)
        size = path.stat().st_size
        print(f"{args.mib} MiB file; peak RSS of the simulator process before and after")
        print("| simulator | upload s | download s | peak RSS before | after | growth | intact |")
        print("|---|---|---|---|---|---|---|")
        for name, run in (("jira (cloud)", jira), ("servicenow", servicenow)):
            before, after, up, down, digest = run(path, size)
            print(
                f"| {name} | {up:.2f} | {down:.2f} | {before:.0f} MiB | {after:.0f} MiB "
                f"| {after - before:.0f} MiB | {digest == expected} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
