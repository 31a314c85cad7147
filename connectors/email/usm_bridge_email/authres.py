"""Whether the receiving mail server vouches for a mail's From: ``Authentication-Results``.

Anybody can write any From. What a mail's sender cannot forge is what the unit's own receiving
server found when the mail arrived, recorded in an ``Authentication-Results`` header (RFC
8601): ``mx.hr.example; dmarc=pass header.from=hr.example; dkim=pass header.d=hr.example``.
Anybody can write that header too, so only headers whose ``authserv-id`` the unit names as
trusted count (RFC 8601 section 5 requires that server to delete headers claiming its id from
mail arriving from outside), and of those only the topmost hop's (headers are prepended on the
way: a header a sender wrote lies below the Received header the unit's server added, and one
forged above the trusted one carries another id).

The From domain is vouched for by an aligned pass (RFC 7489 alignment, relaxed: the same
domain, or one the parent of the other): ``dmarc=pass`` for the From domain, ``dkim=pass``
with ``header.d`` aligned, or ``spf=pass`` with ``smtp.mailfrom`` aligned. Anything else
(fail, none, temperror, a pass for another domain) vouches for nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

__all__ = ["AuthResults", "MethodResult", "parse_authentication_results", "vouched"]

_QUOTED: Final = r'"(?:[^"\\]|\\.)*"'
_PAIR: Final = re.compile(rf"([A-Za-z0-9_.\-/]+)\s*=\s*({_QUOTED}|[^\s;]+)")
_METHODS: Final = frozenset({"dmarc", "dkim", "spf"})


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` of a header with its properties (``header.d`` -> ``hr.example``)."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthResults:
    """One ``Authentication-Results`` header: who wrote it and what it found."""

    authserv_id: str
    results: list[MethodResult]


def _without_comments(value: str) -> str:
    """``value`` with RFC 5322 comments (nested parentheses) removed, quoted strings kept."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _split(value: str) -> list[str]:
    """``value`` split at the semicolons outside quoted strings."""
    return [part.strip() for part in re.findall(rf'(?:{_QUOTED}|[^;"])+', value)]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_authentication_results(value: str) -> AuthResults | None:
    """The header's author and results, or None when it names no ``authserv-id``."""
    parts = _split(_without_comments(" ".join(value.split())))
    if not parts or not parts[0]:
        return None
    authserv_id = _unquote(parts[0].split()[0]).lower()
    results: list[MethodResult] = []
    for part in parts[1:]:
        pairs = _PAIR.findall(part)
        if not pairs:
            continue  # "none": nothing was checked
        method = pairs[0][0].split("/", 1)[0].lower()
        properties = {key.lower(): _unquote(val).lower() for key, val in pairs[1:]}
        results.append(MethodResult(method, _unquote(pairs[0][1]).lower(), properties))
    return AuthResults(authserv_id, results)


def _domain(value: str) -> str:
    return value.rsplit("@", 1)[-1].strip().strip(".").lower()


def _aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment without a public-suffix list: the same domain, or one a sub-domain
    of the other (a pass for a bare public suffix cannot happen: nobody signs for ``com``)."""
    if not domain:
        return False
    return (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )


def _pass(result: MethodResult, from_domain: str) -> str | None:
    """What in ``result`` vouches for ``from_domain``, or None."""
    if result.method not in _METHODS or result.result != "pass":
        return None
    props = result.properties
    if result.method == "dmarc":
        claimed = _domain(props.get("header.from", from_domain))
        return f"dmarc=pass for {claimed}" if claimed == from_domain else None
    if result.method == "dkim":
        signer = _domain(props.get("header.d", props.get("header.i", "")))
        return f"dkim=pass with d={signer}" if _aligned(signer, from_domain) else None
    mailfrom = _domain(props.get("smtp.mailfrom", ""))
    return f"spf=pass for {mailfrom}" if _aligned(mailfrom, from_domain) else None


def vouched(
    headers: list[tuple[int, str]], from_address: str, trusted: list[str]
) -> tuple[bool, str]:
    """(whether a trusted server vouched for ``from_address``'s domain, why or why not).

    :param headers: each Authentication-Results header with the Received headers above it.
    :param trusted: the ``authserv-id``\\ s of the unit's own receiving servers.
    """
    ids = {t.strip().lower() for t in trusted}
    from_domain = _domain(from_address)
    parsed = [(hop, parse_authentication_results(value)) for hop, value in headers]
    mine = [(hop, found) for hop, found in parsed if found and found.authserv_id in ids]
    if not ids:
        return False, "no trusted_authserv_ids are set (nor trust_relay)"
    if not mine:
        return False, f"no Authentication-Results from a trusted server ({', '.join(sorted(ids))})"
    top = min(hop for hop, _ in mine)
    seen: list[str] = []
    for hop, found in mine:
        if hop != top:
            continue  # written before the unit's server received it: by anybody
        for result in found.results:
            why = _pass(result, from_domain)
            if why is not None:
                return True, f"{why} (by {found.authserv_id})"
            seen.append(f"{result.method}={result.result}")
    found_text = ", ".join(seen) or "nothing checked"
    return False, f"no aligned pass for {from_domain} from a trusted server ({found_text})"
