"""``python -m usm_bridge_jira.simulator``: run the Jira simulator on its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta

from .server import JiraSimulator


def build(argv: Sequence[str] | None = None) -> JiraSimulator:
    """The simulator the command line asks for, seeded, not yet serving."""
    parser = argparse.ArgumentParser(
        prog="python -m usm_bridge_jira.simulator",
        description="A Jira Cloud or Data Center stand-in on loopback, for tests and trials.",
    )
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--flavour", choices=["cloud", "datacenter"], default="cloud")
    parser.add_argument(
        "--seed-issues",
        type=int,
        default=0,
        metavar="N",
        help="create N issues (one comment each) in the first project first, last updated "
        "3 s apart up to now",
    )
    parser.add_argument(
        "--project",
        action="append",
        metavar="KEY=NAME",
        help="a project of the site (repeatable; default: IT=IT Service Desk, DEV=...)",
    )
    parser.add_argument(
        "--time-zone",
        default="Europe/Berlin",
        help="the account's time zone (/myself), in which JQL dates are read",
    )
    parser.add_argument(
        "--upload-limit",
        type=int,
        default=None,
        metavar="BYTES",
        help="the site's maximum attachment size (default 10 MiB, Jira's own default)",
    )
    parser.add_argument(
        "--seed-attachments",
        type=int,
        default=0,
        metavar="N",
        help="attach N text files of 1 KiB to each seeded issue",
    )
    parser.add_argument(
        "--second-precision",
        action="store_true",
        help="show times in whole seconds, as some flavours and proxies do",
    )
    args = parser.parse_args(argv)
    projects = None
    if args.project:
        pairs = [item.partition("=") for item in args.project]
        if any(not key or not sep or not name for key, sep, name in pairs):
            parser.error("--project takes KEY=NAME, e.g. --project 'FAC=Facilities Service Desk'")
        projects = {key.upper(): name for key, _, name in pairs}
    simulator = JiraSimulator(
        args.flavour,
        port=args.port,
        time_zone=args.time_zone,
        second_precision=args.second_precision,
        projects=projects,
    )
    if args.upload_limit is not None:
        simulator.site.attachments.upload_limit = args.upload_limit
    if args.seed_issues:
        first = next(iter(simulator.site.projects))
        # A real site's issues were last updated over days, not all in the second the
        # simulator started: spread them (a few seconds apart, ending now), or every later
        # read's overlap window would hold the whole seed, a pile-up no real site has.
        step = timedelta(seconds=3)
        now = simulator.site.clock.now().replace(microsecond=0)
        start = now - step * args.seed_issues
        seeded = simulator.site.seed(
            args.seed_issues, project=first, comments=1, start=start, step=step
        )
        for issue in seeded:
            simulator.site.attachments.seed(issue, args.seed_attachments)
    return simulator


def main(argv: Sequence[str] | None = None) -> int:
    """Start the simulator, print its base URL and the credentials it accepts, serve."""
    simulator = build(argv)
    print(f"Jira simulator ({simulator.flavour}) at {simulator.base_url}")
    for name, value in simulator.credentials().items():
        print(f"  {name} = {value}")
    site = simulator.site
    print(f"  projects = {', '.join(site.projects)}; time zone {site.time_zone}")
    for account, (name, email, login) in site.users.items():
        if account != site.me and account in site.tokens:
            who = email if simulator.flavour == "cloud" else login
            print(f"  a person: {name} ({who}), token {site.tokens[account]}")
    print("Ctrl-C stops it.", flush=True)
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
