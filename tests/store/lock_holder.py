"""A process that takes one of a store's locks and keeps it, for the tests of locks that die with
their holder (run as a subprocess):

    python lock_holder.py STORE_URL LOCK_NAME [--claim TARGET]

Takes ``LOCK_NAME`` (exits 3 saying who holds it if it cannot), with ``--claim`` also claims
every due outbox item of ``TARGET`` in its own name, as a drain does under the push lock, then
prints one JSON line (its pid, its identity, the claimed ids) and keeps everything until its
standard input ends (then it releases and exits 0) or it is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from usm_bridge.store import Store


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("--claim", metavar="TARGET")
    args = parser.parse_args()
    with Store.open(args.url) as store:
        busy = store.locks.acquire(args.name)
        if busy is not None:
            print(json.dumps({"busy": str(busy)}), flush=True)
            return 3
        claimed: list[int] = []
        if args.claim:
            with store.begin() as tx:
                items = tx.claim_outbox(instance=args.claim, holder=store.locks.identity)
            claimed = [item.id for item in items]
        print(
            json.dumps({"pid": os.getpid(), "identity": store.locks.identity, "claimed": claimed}),
            flush=True,
        )
        sys.stdin.read()  # until the test closes it (or kills this process)
        store.locks.release(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
