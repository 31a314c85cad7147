"""Validate what the simulator serves on v3 paths against Jira's official OpenAPI description.

The spec (copied into ``spec/`` so the project is self-contained) is loaded once; OpenAPI 3.0's
``nullable`` is turned into JSON Schema's ``"type": [..., "null"]``; one validator per response
schema is built on first use and cached, with ``$ref`` resolved against the spec's components.
Error responses whose operation documents no body are checked against ``ErrorCollection``,
the documented error shape.

Efficiency: a search page holds a hundred issues of one shape, and a test run serves thousands
of pages. Arrays are therefore reduced to one representative item per distinct item *shape*
(keys and value types, recursively), and a reduced body whose shape was already validated for
the same operation and status is not validated again. Every key and every type served is still
checked; only repeats of an already-checked shape with other values are skipped.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from usm_bridge_jira.simulator import NotJson


def _string_or_number(checker: Any, instance: Any) -> bool:
    return isinstance(instance, str | int | float) and not isinstance(instance, bool)


#: Jira reads request bodies with Jackson, which by default coerces a JSON number into a
#: string field: pycontribs sends ``{"transition": {"id": 41}}`` and Jira takes it. Requests
#: are checked with that leniency; responses strictly.
_LenientRequest = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine("string", _string_or_number),
)

SPEC_PATH = Path(__file__).parent / "spec" / "jira-cloud-platform-v3.openapi.json"
_ERROR_REF = "#/components/schemas/ErrorCollection"


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: _nullable(value) for key, value in node.items()}
        if out.pop("nullable", False) is True:
            if "type" in out:
                out["type"] = [out["type"], "null"]
            elif "$ref" in out or "allOf" in out:
                out = {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_nullable(value) for value in node]
    return node


def _reduce(node: Any) -> tuple[Any, Any]:
    """``(reduced body, shape)``: arrays keep one item per distinct item shape."""
    if isinstance(node, dict):
        reduced: dict[str, Any] = {}
        shape: list[tuple[str, Any]] = []
        for key, value in node.items():
            reduced[key], sub = _reduce(value)
            shape.append((key, sub))
        return reduced, ("o", tuple(shape))
    if isinstance(node, list):
        items: dict[Any, Any] = {}
        for value in node:
            item, sub = _reduce(value)
            items.setdefault(sub, item)
        return list(items.values()), ("a", tuple(items))
    return node, type(node).__name__


class SpecValidator:
    """Validates (method, path, status, body) of v3 responses; :meth:`check` raises on a misfit."""

    def __init__(self, spec_path: Path = SPEC_PATH) -> None:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        self.components = _nullable(spec["components"])
        self.routes: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for template, operations in spec["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            self.routes.append((re.compile(f"^{pattern}$"), template, operations))
        # Literal paths before templated ones: /issue/createmeta is not /issue/{issueIdOrKey}.
        self.routes.sort(key=lambda route: route[1].count("{"))
        self.checked = 0
        self.skipped = 0
        #: Request bodies checked against their operation's documented ``requestBody``.
        self.requests_checked = 0
        self._shapes: set[tuple[str, str, int, Any]] = set()

    @functools.cache  # noqa: B019 - one validator per schema for the validator's lifetime
    def _validator(self, schema_json: str, lenient: bool = False) -> jsonschema.protocols.Validator:
        schema = {**json.loads(schema_json), "components": self.components}
        return (_LenientRequest if lenient else jsonschema.Draft7Validator)(schema)

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for pattern, template, operations in self.routes:
            if pattern.match(path) and method.lower() in operations:
                return template, operations[method.lower()]
        return None

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        found = self.operation(method, path)
        if found is None:
            raise AssertionError(f"{method} {path} is no operation of the official Jira API")
        template, operation = found
        responses = operation["responses"]
        documented = responses.get(str(status)) or responses.get("default")
        if documented is None and status < 400:
            raise AssertionError(f"{method} {template} answered {status}, which it never does")
        schema = (documented or {}).get("content", {}).get("application/json", {}).get("schema")
        if isinstance(body, NotJson):
            # A file's bytes or a plain-text refusal: the status must be one the operation
            # documents, and not with a JSON body.
            if documented is None or schema is not None:
                raise AssertionError(
                    f"{method} {template} answered {status} with {body.media_type}, which it "
                    "does not document"
                )
            self.checked += 1
            return
        if schema is None and status >= 400:
            schema = {"$ref": _ERROR_REF}
        if schema is None:
            assert body is None, f"{method} {template} {status} documents no body, got {body!r}"
            return
        body, shape = _reduce(body)
        if (method, template, status, shape) in self._shapes:
            self.skipped += 1
            return
        self._shapes.add((method, template, status, shape))
        if (method, template) == ("GET", "/rest/api/3/issue/{issueIdOrKey}/remotelink"):
            # The spec documents one link; Jira (and its own docs' example) answer an array.
            assert isinstance(body, list)
            for item in body:
                self._validate(schema, item, method, template, status)
            return
        self._validate(schema, body, method, template, status)

    def request_problem(self, method: str, path: str, body: Any) -> tuple[str, str | None] | None:
        """What is wrong with a write's JSON body, as its operation documents it: a message and
        the field it is about (under ``fields`` / ``update``), or ``None`` when it fits.

        v2 paths are looked up as their v3 twins: the spec is Cloud's v3, whose request shapes
        v2 shares, rich text aside (plain strings where v3 takes ADF), which the spec leaves
        open (``fields`` values and operation values are untyped).
        """
        found = self.operation(method, re.sub(r"^/rest/api/2/", "/rest/api/3/", path))
        if found is None:
            return None  # the response check reports an operation the API does not have
        template, operation = found
        documented = operation.get("requestBody")
        schema = (documented or {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return None
        if body is None:
            return ("The request body is required.", None) if documented.get("required") else None
        validator = self._validator(json.dumps(schema, sort_keys=True), lenient=True)
        error = jsonschema.exceptions.best_match(validator.iter_errors(body))
        self.requests_checked += 1
        if error is None:
            return None
        where = [str(part) for part in error.absolute_path]
        field = where[1] if len(where) > 1 and where[0] in ("fields", "update") else None
        return f"{method} {template}: {'/'.join(where) or '(root)'}: {error.message}", field

    def _validate(self, schema: Any, body: Any, method: str, template: str, status: int) -> None:
        validator = self._validator(json.dumps(schema, sort_keys=True))
        error = jsonschema.exceptions.best_match(validator.iter_errors(body))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise AssertionError(
                f"{method} {template} {status}: the body does not fit the official schema at "
                f"{where or '(root)'}: {error.message}"
            )
        self.checked += 1


@functools.cache
def spec_validator() -> SpecValidator:
    """The one validator of a test session (loading the spec takes a moment)."""
    return SpecValidator()
