"""``usm-bridge check`` online: sign in to every tool and reach the store, changing nothing.

The file checks of :mod:`usm_bridge.checks` say whether a config makes sense; these say whether
the bridge could run with it here and now: each enabled instance's connector ``check()`` (its
sign-in with the configured credentials), and the store opened read-only with its schema
revision held against the code's.

Everything is asked at once, under one overall deadline: a tool that accepts connections and
never answers would otherwise hold ``check`` for its connector's read timeout times its
attempts (minutes), and the others would wait behind it. What has not answered by the deadline
is reported as such; its thread is a daemon thread, abandoned when the command exits.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import BridgeConfig
from .connector import build_connector
from .errors import UsmBridgeError
from .plugins import PluginHost

__all__ = ["DEFAULT_DEADLINE", "Reached", "reach_all", "reach_store"]

#: Seconds ``check`` waits, overall, for every tool and the store to answer.
DEFAULT_DEADLINE = 60.0


@dataclass(frozen=True)
class Reached:
    """One thing the bridge must reach: an instance's tool, or the store."""

    #: ``instance NAME`` or ``store``.
    subject: str
    ok: bool
    #: The tool's or the database's own words (never a secret).
    detail: str
    facts: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "ok": self.ok, "detail": self.detail, "facts": self.facts}


def reach_all(
    config: BridgeConfig, host: PluginHost, *, deadline: float = DEFAULT_DEADLINE
) -> list[Reached]:
    """Every enabled instance's tool and the store, asked at the same time; each one that has
    not answered within ``deadline`` seconds is a failure saying so. Config order, store last."""
    asks: dict[str, Callable[[], Reached]] = {}
    for name, inst in config.instances.items():
        if inst.enabled:
            asks[f"instance {name}"] = functools.partial(_reach_instance, config, host, name)
    asks["store"] = functools.partial(reach_store, config)
    answers = _ask_at_once(asks, deadline)
    reached = []
    for name, inst in config.instances.items():
        subject = f"instance {name}"
        if not inst.enabled:
            reached.append(Reached(subject, True, "disabled: not checked"))
        else:
            reached.append(answers.get(subject) or _no_answer(subject, deadline))
    reached.append(answers.get("store") or _no_answer("store", deadline))
    return reached


def _ask_at_once(asks: dict[str, Callable[[], Reached]], deadline: float) -> dict[str, Reached]:
    """Run each ask in its own daemon thread; the answers that came within ``deadline``."""
    answers: dict[str, Reached] = {}
    done = threading.Condition()

    def run(subject: str, ask: Callable[[], Reached]) -> None:
        try:
            answer = ask()
        except Exception as exc:  # the asks catch their own; this is the last resort
            answer = Reached(subject, False, f"{type(exc).__name__}: {exc}")
        with done:
            answers[subject] = answer
            done.notify_all()

    for subject, ask in asks.items():
        threading.Thread(
            target=run, args=(subject, ask), name=f"check {subject}", daemon=True
        ).start()
    with done:
        done.wait_for(lambda: len(answers) == len(asks), timeout=deadline)
        return dict(answers)


def _no_answer(subject: str, deadline: float) -> Reached:
    what = "the store" if subject == "store" else "the tool"
    return Reached(
        subject,
        False,
        f"no answer within {deadline:g} s: {what} accepts no connection or does not reply "
        "(a longer --timeout waits more)",
    )


def _reach_instance(config: BridgeConfig, host: PluginHost, name: str) -> Reached:
    subject, inst = f"instance {name}", config.instances[name]
    try:
        connector = build_connector(
            host.connector_type(inst.kind),
            name,
            config.tool_settings(name),
            base_dir=config.base_dir,
        )
        try:
            result = connector.check()
        finally:
            connector.close()
    except UsmBridgeError as exc:
        return Reached(subject, False, str(exc))
    except Exception as exc:  # a connector's own fault: say what, and check the others
        return Reached(subject, False, f"{type(exc).__name__}: {exc}")
    return Reached(subject, result.ok, result.detail, dict(result.facts))


def reach_store(config: BridgeConfig) -> Reached:
    """Open the store read-only and hold its schema revision against the code's."""
    from .store.revision import read_store_revision
    from .store.upgrades import SchemaState

    try:
        revision = read_store_revision(config.store.url)
    except UsmBridgeError as exc:
        return Reached("store", False, str(exc))
    facts = {"url": revision.url, "revision": revision.current or "", "head": revision.head}
    where = revision.url
    if revision.state is SchemaState.CURRENT:
        return Reached("store", True, f"{where} at schema revision {revision.current}", facts)
    if revision.state is SchemaState.EMPTY:
        created = revision.missing_file or "the schema"
        return Reached("store", True, f"{where} is new: the first sync creates {created}", facts)
    # Older or newer: the words every command that needs the code's schema refuses it with.
    refusal = revision.status.refusal(where)
    assert refusal is not None  # neither current nor empty: older or newer
    return Reached("store", False, str(refusal), facts)
