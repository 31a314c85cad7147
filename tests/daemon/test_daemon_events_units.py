"""The pieces of the webhook path on their own: the signature, the replay set, and the
schedule's hint (the debounce that turns a burst of deliveries into one or two cycles)."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from usm_bridge.events.seen import SeenDeliveries
from usm_bridge.events.signature import sign, signature_matches
from usm_bridge.sync.daemon import Schedule

BODY = b'{"webhookEvent":"jira:issue_updated","issue":{"id":"10001"}}'


def test_the_signature_is_atlassians_hmac_sha256_of_the_raw_body() -> None:
    expected = "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", BODY) == expected
    assert signature_matches("s3cret", BODY, expected)
    assert signature_matches("s3cret", BODY, f"  {expected} ")  # header whitespace


@pytest.mark.parametrize(
    "header",
    [
        sign("other", BODY),  # another secret
        sign("s3cret", BODY + b" "),  # another body: one byte more
        sign("s3cret", BODY).replace("sha256=", "sha1="),  # another method
        sign("s3cret", BODY).removeprefix("sha256="),  # no method
        sign("s3cret", BODY).upper(),  # the hex is compared as sent
        "sha256=" + "é" * 64,  # not ASCII: refused, never an error
        "",
    ],
)
def test_any_other_signature_does_not_match(header: str) -> None:
    assert not signature_matches("s3cret", BODY, header)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_delivery_id_is_refused_the_second_time_until_it_expires() -> None:
    clock = Clock()
    seen = SeenDeliveries(ttl=60.0, capacity=10, clock=clock)
    assert seen.first_time("a")
    assert not seen.first_time("a")
    clock.t = 59.0
    assert not seen.first_time("a")
    clock.t = 60.0
    assert seen.first_time("a")  # expired: taken again (and recorded again)
    assert len(seen) == 1


def test_the_replay_set_never_holds_more_than_its_capacity() -> None:
    seen = SeenDeliveries(ttl=3600.0, capacity=100, clock=Clock())
    for n in range(1000):
        assert seen.first_time(str(n))
    assert len(seen) == 100
    assert not seen.first_time("999")  # the newest are kept
    assert seen.first_time("0")  # the oldest went first


def schedule(interval: float = 300.0) -> Schedule:
    # No jitter on the first cycle: due at 0.
    rng = random.Random(3)
    s = Schedule({"fac": interval, "other": interval}, now=0.0, rng=rng)
    s.slots["fac"].next_due = s.slots["other"].next_due = 0.0
    return s


def run_cycle(s: Schedule, start: float, end: float, *, ok: bool = True) -> float:
    assert s.due(start) == ["fac"] or "fac" in s.due(start)
    s.start("fac", start)
    return s.finish("fac", ok=ok, now=end, wall=None, error=None if ok else "down")  # type: ignore[arg-type]


def test_a_burst_of_hints_brings_one_cycle_forward_by_the_debounce() -> None:
    s = schedule()
    run_cycle(s, 0.0, 1.0)  # the first cycle: the next is due about 300 s later
    assert s.slots["fac"].next_due > 250.0
    for n in range(50):
        s.hint("fac", now=10.0 + n * 0.01, delay=1.0)
    assert s.slots["fac"].next_due == pytest.approx(11.0)  # the first hint's, not pushed on
    assert "fac" not in s.due(10.9)
    assert "fac" in s.due(11.0)
    assert s.slots["other"].next_due == 0.0  # the other instance is left alone


def test_hints_during_a_cycle_give_exactly_one_more_cycle_after_it() -> None:
    s = schedule()
    run_cycle(s, 0.0, 1.0)
    s.hint("fac", now=10.0, delay=1.0)
    s.start("fac", 11.0)
    for n in range(49):  # the rest of the burst, while the cycle runs
        s.hint("fac", now=11.1 + n * 0.01, delay=1.0)
    s.finish("fac", ok=True, now=12.0, wall=None)  # type: ignore[arg-type]
    assert s.slots["fac"].next_due == pytest.approx(13.0)  # one more, a debounce later
    s.start("fac", 13.0)
    s.finish("fac", ok=True, now=14.0, wall=None)  # type: ignore[arg-type]
    assert s.slots["fac"].next_due > 250.0  # then back to polling


def test_a_hint_never_delays_a_cycle_nor_cuts_a_backoff_short() -> None:
    s = schedule()
    assert not s.hint("fac", now=0.0, delay=1.0)  # due now already: stays due now
    assert s.slots["fac"].next_due == 0.0
    run_cycle(s, 0.0, 1.0, ok=False)
    backoff = s.slots["fac"].next_due
    assert not s.hint("fac", now=2.0, delay=1.0)
    assert s.slots["fac"].next_due == backoff
    assert not s.hint("nobody", now=2.0, delay=1.0)
