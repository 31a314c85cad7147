"""``python -m usm_bridge_servicenow.simulator``: a simulated instance for admins and clients.

Prints the base URL and the credentials it accepts, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading

from .ratelimit import RateLimitRule
from .replay import EventLogReplay
from .server import ServiceNowSimulator

_WORDS = ("Printer", "VPN", "Laptop", "E-mail", "Badge", "Wi-Fi", "Monitor", "Password")
_TROUBLE = ("does not start", "is slow", "drops out", "needs replacing", "shows an error")


def seed(sim: ServiceNowSimulator, count: int, rng: random.Random) -> None:
    """``count`` incidents with a realistic spread of impact and urgency, and of time.

    A real desk's records were last updated over days, not all in the second the simulator
    started: spreading them (a few seconds apart, ending now) keeps a backfill of the seed
    from measuring a pile-up no real instance has.
    """
    step = 3.0
    sim.clock.advance(-step * count)
    for _ in range(count):
        sim.clock.advance(step)
        sim.insert(
            "incident",
            {
                "short_description": f"{rng.choice(_WORDS)} {rng.choice(_TROUBLE)}",
                "impact": rng.choice("1223333"),
                "urgency": rng.choice("1223333"),
                "category": rng.choice(["inquiry", "software", "hardware", "network"]),
            },
        )


def build(argv: list[str] | None = None) -> tuple[ServiceNowSimulator, int]:
    """The simulator the command line asks for, seeded, not started; and the replayed events."""
    parser = argparse.ArgumentParser(
        prog="python -m usm_bridge_servicenow.simulator",
        description="A ServiceNow Table API simulator on loopback.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--seed-records", type=int, default=0, help="incidents to create")
    parser.add_argument(
        "--seed-attachments",
        type=int,
        default=0,
        metavar="N",
        help="attach N text files of 1 KiB to each seeded incident (the Attachment API)",
    )
    parser.add_argument(
        "--replay", action="store_true", help="replay the real incident event log (UCI 498)"
    )
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default=None, help="default: a random one, printed")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="a rate limit rule: N Table API requests per user per hour (default: none)",
    )
    parser.add_argument(
        "--autoclose-days",
        type=float,
        default=None,
        metavar="N",
        help="close resolved incidents after N days without an update, as the system user "
        "(glide.ui.autoclose.time; default: off)",
    )
    args = parser.parse_args(argv)
    rule = RateLimitRule(args.rate_limit) if args.rate_limit is not None else None
    sim = ServiceNowSimulator(
        port=args.port, username=args.username, password=args.password, rate_limit=rule
    )
    sim.autoclose.days = args.autoclose_days
    seed(sim, args.seed_records, random.Random(4))  # noqa: S311 - sample data, not secrets
    for incident in sim.ids("incident") if args.seed_attachments else []:
        sim.attachments.seed("incident", incident, args.seed_attachments)
    replayed = EventLogReplay(sim).play() if args.replay else []
    return sim, len(replayed)


def main(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground."""
    sim, replayed = build(argv)
    sim.start()
    print(f"ServiceNow simulator at {sim.base_url}", flush=True)
    print(f"  basic auth     : {sim.username} / {sim.password}")
    print(f"  OAuth          : POST {sim.base_url}/oauth_token.do")
    print(f"    client_id    : {sim.client_id}")
    print(f"    client_secret: {sim.client_secret}")
    print(f"  incidents      : {len(sim.ids('incident'))} ({replayed} replayed events)")
    if sim.rate_limiter is not None:
        print(f"  rate limit     : {sim.rate_limiter.rule.requests} requests per user per hour")
    print("Ctrl-C stops it.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
