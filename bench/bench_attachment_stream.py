"""Benchmark: an attachment's content through the bridge at flat memory, whatever its size.

Run: ``.venv/bin/python bench/bench_attachment_stream.py [--sizes 1,100] [--chunk 65536]``

For each size (MB), a fresh child process takes a file of that size in as a connector does
(:func:`usm_bridge.attachments.take_in`: the name made safe, the content spooled to a private
file under a temporary state folder, hashed and counted on the way, its type sniffed, the
policy's decision) from a source that makes it chunk by chunk (a PDF head, then random
bytes: nothing of it exists whole anywhere), then reads the spooled copy back in chunks into a
sink that hashes it, as an upload to the target would; the spool file is deleted at the end.

Reported per size: peak RSS of the child (``ru_maxrss``) and its RSS after the imports, before
the file (the difference is what the file cost), MB/s through both legs, and whether both
SHA-256 agree. Target: the peak at 100 MB no more than a few MiB above the peak at 1 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MB = 1_000_000


def _source(size: int, chunk: int) -> Iterator[bytes]:
    # A PDF's first bytes, so that the file is sniffed and accepted as a form would be; the
    # rest random (incompressible), made a chunk at a time.
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    sent = 0
    while sent < size:
        piece = (head + os.urandom(chunk - len(head)) if sent == 0 else os.urandom(chunk))[
            : size - sent
        ]
        sent += len(piece)
        yield piece


def _child(size: int, chunk: int) -> dict[str, object]:
    from usm_bridge.attachments import AttachmentPolicy, take_in

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    policy = AttachmentPolicy(max_size=size + 1)
    with tempfile.TemporaryDirectory() as state:
        started = time.perf_counter()
        with take_in(
            _source(size, chunk), name="signed-form.pdf", declared_type="application/pdf",
            policy=policy, instance="hr-mail", remote_id="1", spool_dir=Path(state) / "spool",
        ) as intake:  # fmt: skip
            taken = time.perf_counter()
            assert intake.spooled is not None, intake.refusal
            upload = hashlib.sha256()
            sent = 0
            for piece in intake.spooled.chunks(chunk):
                upload.update(piece)
                sent += len(piece)
            done = time.perf_counter()
            attachment = intake.attachment
        left = list((Path(state) / "spool").iterdir())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size": size,
        "media_type": attachment.media_type,
        "hashes_agree": upload.hexdigest() == attachment.sha256 and sent == attachment.size,
        "spool_left": len(left),
        "in_mb_s": size / MB / (taken - started),
        "out_mb_s": size / MB / (done - taken),
        "rss_before_kib": before,
        "peak_rss_kib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,100", help="sizes in MB, comma-separated")
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.chunk)))
        return
    print(f"{'size':>8} {'type':>16} {'hash ok':>8} {'spool left':>10} {'in MB/s':>8} "
          f"{'out MB/s':>9} {'RSS before':>11} {'peak RSS':>9}")  # fmt: skip
    for size_mb in (int(s) for s in args.sizes.split(",")):
        argv = [sys.executable, __file__, "--child", str(size_mb * MB), "--chunk", str(args.chunk)]
        child = subprocess.run(  # noqa: S603 - this very script, fixed arguments
            argv, capture_output=True, text=True, check=True
        )
        result = json.loads(child.stdout)
        print(
            f"{size_mb:>5} MB {result['media_type']:>16} {result['hashes_agree']!s:>8} "
            f"{result['spool_left']:>10} {result['in_mb_s']:>8.0f} {result['out_mb_s']:>9.0f} "
            f"{result['rss_before_kib'] / 1024:>7.1f} MiB {result['peak_rss_kib'] / 1024:>5.1f} MiB"
        )


if __name__ == "__main__":
    main()
