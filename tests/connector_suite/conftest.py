"""Fixtures of the connector-suite and HTTP tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from usm_bridge.http import HttpClient, RetryPolicy, Timeouts
from usm_bridge.testing import FakeClock

API = "https://tool.test/"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def client(clock: FakeClock, session: requests.Session) -> Iterator[HttpClient]:
    """A client with a fake clock: retries are recorded in ``clock.sleeps``, never waited."""
    with HttpClient(
        API,
        session=session,
        timeouts=Timeouts(connect=2.0, read=7.0),
        retry=RetryPolicy(max_attempts=4, budget=60.0, backoff_initial=1.0, backoff_max=8.0),
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
    ) as client:
        yield client
