"""Writing the few TOML values the importer prints: strings, lists of strings, offset date
times, inline tables of those, and keys.

Every string a document gave is untrusted, so it is always written as a basic string with
every character TOML does not allow raw escaped: a name holding a newline and ``[store]``
stays a name, and never becomes a table of the printed config.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

__all__ = ["TomlValue", "toml_key", "toml_value"]

TomlValue = str | datetime | Sequence[str] | Mapping[str, "TomlValue"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    """``key`` as a bare key where TOML allows one, else quoted."""
    return key if _BARE_KEY.match(key) else _string(key)


def toml_value(value: TomlValue) -> str:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime):
        # tomllib reads an offset date-time with its fraction back as the same aware datetime.
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, Mapping):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return "[" + ", ".join(_string(item) for item in value) + "]"


def _string(text: str) -> str:
    # JSON's escapes are TOML's (\\" \\\\ \\n \\t \\uXXXX ...), and JSON escapes every control
    # character but DEL, which TOML also wants escaped. Non-ASCII stays as it is: JSON would
    # write characters outside the BMP as surrogate pairs, which TOML refuses.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
