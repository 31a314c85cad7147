"""The Starlette app on the daemon's (or ``usm-bridge serve``'s) ``--listen`` port: the event
receivers beside
``/healthz`` and ``/metrics``, which answer exactly as
:class:`~usm_bridge.sync.metrics.MetricsServer` does (same bodies, status codes and headers),
so probes and scrapers see no difference."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..sync.metrics import Exposing, Health
from .receiver import EventReceiver

__all__ = ["build_app"]

log = logging.getLogger(__name__)

_TEXT = "text/plain; charset=utf-8"
_NO_STORE = {"Cache-Control": "no-store"}


def build_app(
    metrics: Exposing, health: Callable[[], Health], receivers: Iterable[EventReceiver]
) -> Starlette:
    """The app; each of ``receivers`` answers ``POST /events/{its kind}/{instance}``, an
    instance it does not know with a counted 404. ``health`` may block (``serve`` asks its
    broker): it runs on a thread of the pool, not on the event loop."""

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, 200, _NO_STORE, media_type=content_type)

    async def health_endpoint(request: Request) -> Response:
        try:
            found = await run_in_threadpool(health)
        except Exception:  # a bug in a health check must still answer, and say so
            log.exception("the health check failed")
            found = Health(False, {"status": "error", "error": "the health check failed"})
        body = json.dumps(found.detail, indent=2, default=str).encode() + b"\n"
        return Response(body, 200 if found.ok else 503, _NO_STORE, media_type="application/json")

    async def index(request: Request) -> Response:
        text = b"usm-bridge: /healthz, /metrics\n"
        return Response(text, 200, _NO_STORE, media_type=_TEXT)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        text = b"not found\n" if status == 404 else f"{status}\n".encode()
        return Response(text, status, _NO_STORE, media_type=_TEXT)

    routes = [
        Route("/metrics", metrics_endpoint, methods=["GET", "HEAD"]),
        Route("/healthz", health_endpoint, methods=["GET", "HEAD"]),
        Route("/health", health_endpoint, methods=["GET", "HEAD"]),
        Route("/", index, methods=["GET", "HEAD"]),
    ]
    routes += [
        Route(f"/events/{r.kind.kind}/{{instance}}", _endpoint(r), methods=["POST"])
        for r in receivers
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


def _endpoint(receiver: EventReceiver) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        peer = request.client.host if request.client is not None else "?"
        outcome = await receiver.receive(
            request.path_params["instance"],
            request.headers,
            request.stream(),
            peer,
            request.query_params,
        )
        text = f"{outcome.name}\n".encode()
        return Response(text, outcome.status, _NO_STORE, media_type=_TEXT)

    return endpoint
