"""The canonical model as JSON Schema, so other tools can validate what the bridge emits."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .model import Agreement, Call, Person, Service, Unit
from .schema_rules import with_call_rules

__all__ = ["SCHEMA_ID", "SCHEMA_MODELS", "json_schema"]

SCHEMA_ID = "https://usm-bridge.invalid/schema/usm-model.json"

#: The models ``usm-bridge schema`` exports, by the name used on the command line.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "call": Call,
    "unit": Unit,
    "service": Service,
    "agreement": Agreement,
    "person": Person,
}


def json_schema(model: str | None = None) -> dict[str, Any]:
    """One model's schema, or all of them as ``$defs`` of one document when ``model`` is None."""
    if model is not None:
        schema = SCHEMA_MODELS[model].model_json_schema(mode="serialization")
        if model == "call":  # the cross-field rules, as strict as the model
            schema = with_call_rules(schema)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    _, document = models_json_schema(
        [(cls, "serialization") for cls in SCHEMA_MODELS.values()],
        title="USM canonical model (usm-bridge)",
    )
    document["$defs"]["Call"] = with_call_rules(document["$defs"]["Call"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **document,
    }
