"""What a connector's settings model says about each setting, for the starter config to show.

Everything comes from the pydantic model itself (name, type, default, whether required, the
``Field(description=...)``, the first of ``Field(examples=...)``), so a connector installed
later, a third-party one included, is documented the same way without a line of code here.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..durations import Duration, Wait

__all__ = ["NOT_SET", "SettingDoc", "describe_settings", "is_secret_name"]

#: The ``default`` of a setting that has none (required, or optional and unset).
NOT_SET: Any = PydanticUndefined

#: A setting named like this holds a secret even when it is typed as plain text.
_SECRET_NAME = re.compile(r"(^|_)(password|passphrase|secret|token)$")

#: A reStructuredText role: :class:`~usm_bridge.http_connector.HttpConnectorSettings`.
_ROLE = re.compile(r":[a-z]+:`([^`]+)`")

# The validators the bounded duration types carry: how a field typed with one is recognised.
_DURATION_VALIDATORS = frozenset(
    getattr(meta, "func", None) for alias in (Duration, Wait) for meta in get_args(alias)[1:]
)


def is_secret_name(name: str) -> bool:
    """Whether a setting's name says it is a secret (``api_token``, but not ``token_url``)."""
    return bool(_SECRET_NAME.search(name))


@dataclass(frozen=True)
class SettingDoc:
    """One setting of a connector's settings model, as a config file's reader needs it."""

    name: str
    #: What the value is, in words: ``text``, ``whole number``, ``one of "a", "b"``.
    value_kind: str
    description: str | None
    required: bool
    #: The default as a config file would spell it, or :data:`NOT_SET`.
    default: Any
    #: The first of the field's ``examples``, or :data:`NOT_SET`.
    example: Any
    secret: bool
    #: The settings of a nested table (``imap = { ... }``), or ``None`` for a plain value.
    table: tuple[SettingDoc, ...] | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not NOT_SET


def describe_settings(model: type[BaseModel]) -> list[SettingDoc]:
    """Every setting of ``model`` in declaration order (inherited ones first)."""
    return [_describe(name, field) for name, field in model.model_fields.items()]


def _describe(name: str, field: FieldInfo) -> SettingDoc:
    annotation = field.annotation
    nested = _nested_model(annotation)
    default = _default(field)
    examples = field.examples or []
    secret = _holds_secret(annotation) or is_secret_name(name)
    return SettingDoc(
        name=name,
        value_kind=_value_kind(annotation, field),
        description=_plain(field.description) if field.description else None,
        required=field.is_required(),
        default=default,
        example=examples[0] if examples else NOT_SET,
        secret=secret,
        table=tuple(describe_settings(nested)) if nested is not None else None,
    )


def _plain(docstring: str) -> str:
    """A docstring's reStructuredText as plain words: ``x`` and :class:`~a.B` become x and B."""
    text = _ROLE.sub(
        lambda match: (
            match.group(1).split(".")[-1] if match.group(1).startswith("~") else match.group(1)
        ),
        docstring,
    )
    return " ".join(text.replace("``", "").split())


def _default(field: FieldInfo) -> Any:
    if field.is_required():
        return NOT_SET
    value = field.get_default(call_default_factory=True)
    if value is None:
        return NOT_SET
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    return value


def _without_none(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [arg for arg in get_args(annotation) if arg is not type(None)]
    return [annotation]


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    options = _without_none(annotation)
    if len(options) == 1 and isinstance(options[0], type) and issubclass(options[0], BaseModel):
        return options[0]
    return None


def _holds_secret(annotation: Any) -> bool:
    return any(option is SecretStr for option in _without_none(annotation))


def _value_kind(annotation: Any, field: FieldInfo) -> str:
    if any(getattr(meta, "func", None) in _DURATION_VALIDATORS for meta in field.metadata):
        return "duration"
    options = _without_none(annotation)
    words = [_kind_word(option) for option in options]
    return " or ".join(words)


def _kind_word(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:  # SettingsPath | None, say: the type inside
        return _kind_word(get_args(annotation)[0])
    if origin is Literal:
        return "one of " + ", ".join(f'"{arg}"' for arg in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return f"list of {_kind_word(item)}"
    if origin is dict:
        _, value = get_args(annotation) or (Any, Any)
        return f"table of {_kind_word(value)}"
    simple = {
        str: "text",
        int: "whole number",
        float: "number",
        bool: "true or false",
        SecretStr: "secret",
    }
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return getattr(annotation, "__name__", str(annotation))
