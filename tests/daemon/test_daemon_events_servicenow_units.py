"""The ServiceNow receiver on its own (no HTTP, no daemon): every outcome of a delivery, in
the order the checks run, each counted once and logged without the body."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from usm_bridge.events.counts import OUTCOMES, EventCounts
from usm_bridge.events.kinds import SERVICENOW_EVENTS
from usm_bridge.events.receiver import EventReceiver, Outcome, WakeFailed
from usm_bridge.events.signature import SERVICENOW, sign

SECRET = "snow-s3cret-for-the-unit-tests"
BODY = (
    b'{"table":"incident","sys_id":"9d385017c611228701d22104cc95c371",'
    b'"sys_mod_count":"4","sys_updated_on":"2026-12-07 12:00:00"}'
)
MAX_BODY = 1024


class Harness:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.woken: list[str] = []
        self.read_chunks = 0
        #: When set, the wake fails as ``serve``'s does with its broker down.
        self.broker_down = False
        self.receiver = EventReceiver(
            SERVICENOW_EVENTS,
            {"it-snow": SECRET},
            self._wake,
            EventCounts(self.registry, ["it-snow"]),
            max_body=MAX_BODY,
        )

    def deliver(
        self,
        body: bytes = BODY,
        *,
        instance: str = "it-snow",
        delivery: str | None = "9d385017c611228701d22104cc95c371:4",
        signature: str | None = None,
        chunk: int = 256,
        declare: bool = True,
    ) -> Outcome:
        headers = {"content-type": "application/json"}
        headers["x-usm-bridge-signature"] = (
            SERVICENOW.sign(SECRET, body) if signature is None else signature
        )
        if not headers["x-usm-bridge-signature"]:
            del headers["x-usm-bridge-signature"]
        if delivery is not None:
            headers["x-usm-bridge-delivery"] = delivery
        if declare:
            headers["content-length"] = str(len(body))

        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(body), chunk):
                self.read_chunks += 1
                yield body[start : start + chunk]

        return asyncio.run(self.receiver.receive(instance, headers, stream(), "127.0.0.9"))

    def _wake(self, instance: str) -> None:
        if self.broker_down:
            raise WakeFailed("the broker does not answer")
        self.woken.append(instance)

    def counted(self, outcome: str, instance: str = "it-snow") -> float:
        value = self.registry.get_sample_value(
            "usm_bridge_events_total", {"instance": instance, "outcome": outcome}
        )
        return 0.0 if value is None else value


def test_the_signature_is_base64_hmac_sha256_of_the_raw_body_as_generatemac_gives_it() -> None:
    # GlideCertificateEncryption.generateMac(base64(key), "HmacSHA256", body): Base64.
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()
    assert SERVICENOW.sign(SECRET, BODY) == "sha256=" + base64.b64encode(digest).decode()
    assert SERVICENOW.matches(SECRET, BODY, " " + SERVICENOW.sign(SECRET, BODY) + " ")


def test_a_signed_delivery_is_accepted_and_wakes_its_instance() -> None:
    h = Harness()
    assert h.deliver() == Outcome(202, "accepted")
    assert h.woken == ["it-snow"]
    assert h.counted("accepted") == 1


def test_the_same_change_twice_is_a_replay_and_the_next_change_is_not() -> None:
    h = Harness()
    assert h.deliver().name == "accepted"
    assert h.deliver() == Outcome(200, "replayed")
    assert h.deliver(delivery="9d385017c611228701d22104cc95c371:5").name == "accepted"
    assert h.woken == ["it-snow", "it-snow"]
    assert (h.counted("accepted"), h.counted("replayed")) == (2, 1)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (sign(SECRET, BODY), "Atlassian's hex digest: not this scheme"),
        (SERVICENOW.sign("another secret", BODY), "another secret"),
        (SERVICENOW.sign(SECRET, BODY + b"\n"), "another body"),
        (SERVICENOW.sign(SECRET, BODY).removeprefix("sha256="), "no method"),
        (SERVICENOW.sign(SECRET, BODY).rstrip("="), "without its Base64 padding"),
        ("sha256=" + "é" * 44, "not ASCII"),
    ],
)
def test_a_bad_signature_is_403_and_does_not_burn_the_delivery_id(
    signature: str, reason: str
) -> None:
    h = Harness()
    assert h.deliver(signature=signature) == Outcome(403, "bad_signature"), reason
    assert h.woken == []
    assert h.deliver().name == "accepted"  # the real delivery of that id still goes through


def test_an_unsigned_delivery_is_401_before_its_body_is_read() -> None:
    h = Harness()
    assert h.deliver(signature="") == Outcome(401, "unsigned")
    assert h.read_chunks == 0 and h.woken == []


def test_an_unknown_instance_is_404_counted_without_its_name() -> None:
    h = Harness()
    assert h.deliver(instance="fac-jira").name == "unknown_instance"
    assert h.deliver(instance="../x").status == 404
    assert h.counted("unknown_instance", instance="") == 2
    assert h.read_chunks == 0


def test_a_body_over_the_cap_is_413_declared_or_while_streaming() -> None:
    h = Harness()
    big = b"{" + b" " * MAX_BODY + b"}"
    assert h.deliver(big, signature=SERVICENOW.sign(SECRET, big)) == Outcome(413, "too_large")
    assert h.read_chunks == 0  # refused on its Content-Length alone
    assert h.deliver(big, signature=SERVICENOW.sign(SECRET, big), declare=False).status == 413
    assert h.read_chunks == MAX_BODY // 256 + 1  # reading stopped at the first chunk past it
    assert h.counted("too_large") == 2 and h.woken == []


def test_every_delivery_is_counted_once(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    caplog.set_level(logging.DEBUG, logger="usm_bridge.events")
    got = [
        h.deliver().name,
        h.deliver().name,
        h.deliver(signature="").name,
        h.deliver(signature="sha256=AAAA").name,
        h.deliver(instance="nobody").name,
        h.deliver(b"x" * (MAX_BODY + 1), declare=False).name,
    ]
    h.broker_down = True
    got.append(h.deliver(delivery="9d385017c611228701d22104cc95c371:5").name)
    assert got == ["accepted", "replayed", "unsigned", "bad_signature", "unknown_instance",
                   "too_large", "unavailable"]  # fmt: skip
    assert sorted(got) == sorted(OUTCOMES)
    total = sum(h.counted(o) for o in OUTCOMES if o != "unknown_instance")
    assert total + h.counted("unknown_instance", instance="") == len(got)
    text = caplog.text
    assert "ServiceNow event for it-snow refused: bad_signature (from 127.0.0.9)" in text
    # Neither the body, nor the delivery id, nor any signature is logged.
    assert "9d385017" not in text and "incident" not in text and "sha256" not in text
    assert SECRET not in text


def test_a_delivery_the_wake_could_not_act_on_is_503_and_taken_when_resent() -> None:
    h = Harness()
    h.broker_down = True
    refused = h.deliver()
    assert (refused.status, refused.name) == (503, "unavailable")
    assert h.woken == [] and h.counted("unavailable") == 1
    # The same delivery again once the broker is back: taken, not refused as a replay.
    h.broker_down = False
    assert h.deliver().name == "accepted"
    assert h.deliver().name == "replayed"
    assert h.woken == ["it-snow"]
