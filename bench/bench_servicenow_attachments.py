"""The ServiceNow connector's ``put_attachment`` and ``open_attachment`` with a large file: flat
memory in the bridge's process, and how long each way takes beside bare ``requests``.

Run: ``.venv/bin/python bench/bench_servicenow_attachments.py [--sizes 1,100]``

The simulator runs in its own process (``sim_processes``), so only the bridge's memory is
measured here. For each size (MiB) a file of random bytes is written to disk, then:

- **bare**: ``requests`` alone uploads it from the open file (``POST /attachment/file``) and
  downloads it (``/file``, ``iter_content``) through SHA-256: what the server and the socket
  cost;
- **connector**: ``put_attachment`` with the file read as 64 KiB chunks by a generator (as a
  spooled file gives them), then ``open_attachment`` hashed chunk by chunk.

Reported: seconds each way, and how far this process's peak resident memory (``VmHWM``, reset
before the run) rose above its resident size at the start of the connector's run. Flat
memory means the growth does not follow the file's size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from sim_processes import ServiceNowSimulatorProcess
from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings

_CHUNK = 64 * 1024


def status_mib(field: str) -> float:
    """A memory figure of this process (``VmHWM``: the peak, ``VmRSS``: now), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def reset_peak() -> None:
    """Start ``VmHWM`` over from the present resident size (Linux 4.0 on: ``clear_refs`` 5),
    so that a run's peak is its own, not the file's making or the bare run's."""
    Path("/proc/self/clear_refs").write_text("5")


def make_file(directory: Path, mib: int) -> tuple[Path, str]:
    """A file of random bytes and its SHA-256, written a MiB at a time."""
    path = directory / f"file-{mib}.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(mib):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    return path, digest.hexdigest()


def chunks_of(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            yield chunk


def bare(sim: ServiceNowSimulatorProcess, incident: str, path: Path) -> tuple[float, float, str]:
    with requests.Session() as session:
        session.auth = (sim.username, sim.password)
        started = time.perf_counter()
        with path.open("rb") as stream:
            answer = session.post(
                f"{sim.base_url}/api/now/attachment/file",
                params={"table_name": "incident", "table_sys_id": incident, "file_name": "b.bin"},
                data=stream,
                headers={"Content-Type": "application/octet-stream"},
                timeout=300,
            )
        answer.raise_for_status()
        up = time.perf_counter() - started
        digest = hashlib.sha256()
        started = time.perf_counter()
        with session.get(answer.json()["result"]["download_link"], stream=True, timeout=300) as got:
            for chunk in got.iter_content(_CHUNK):
                digest.update(chunk)
        return up, time.perf_counter() - started, digest.hexdigest()


def connector_run(
    connector: ServiceNowConnector, incident: str, path: Path
) -> tuple[float, float, str]:
    size = path.stat().st_size
    started = time.perf_counter()
    file_id = connector.put_attachment(
        incident, "c.bin", "application/octet-stream", size, chunks_of(path)
    )
    up = time.perf_counter() - started
    digest = hashlib.sha256()
    started = time.perf_counter()
    with connector.open_attachment(file_id) as chunks:
        for chunk in chunks:
            digest.update(chunk)
    return up, time.perf_counter() - started, digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1,100", help="file sizes in MiB, comma-separated")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch, ServiceNowSimulatorProcess(1) as sim:
        settings = ServiceNowSettings.model_validate(
            {**sim.settings(), "read_timeout": 300.0, "follow_attachments": False}
        )
        connector = ServiceNowConnector("bench", settings)
        incident = next(iter(connector.remote_ids()))
        print(
            "| MiB | bare up s | bare down s | connector up s | connector down s "
            "| peak RSS growth | intact |"
        )
        print("|---|---|---|---|---|---|---|")
        for mib in sizes:
            path, expected = make_file(Path(scratch), mib)
            bare_up, bare_down, bare_digest = bare(sim, incident, path)
            reset_peak()
            before = status_mib("VmRSS")
            up, down, digest = connector_run(connector, incident, path)
            growth = status_mib("VmHWM") - before
            intact = digest == expected == bare_digest
            print(
                f"| {mib} | {bare_up:.2f} | {bare_down:.2f} | {up:.2f} | {down:.2f} "
                f"| {growth:.1f} MiB | {intact} |"
            )
            path.unlink()
        connector.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
