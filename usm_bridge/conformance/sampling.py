"""Reproducible samples of a check's population, for an auditor's manual testing.

``usm-bridge report conformance --sample N --seed S`` draws, for each check and unit, N items
of what the check tested (its population, not only its exceptions). The draw never depends on
the order the store returns rows in: the items are first sorted by a stable key (the tool's
instance and reference, and for a transition its audit event), then ``random.Random`` seeded
with ``"S/CHECK/UNIT"`` picks N of them. Python seeds a ``Random`` from text through SHA-512, so
the same seed gives the same sample on any machine and in any process; seeding per check and
unit keeps one unit's sample the same when another unit's data changes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SampleRequest", "SamplingInfo", "draw"]

T = TypeVar("T")


@dataclass(frozen=True)
class SampleRequest:
    """How many items to draw per check and unit, and the seed (any text)."""

    size: int
    seed: str

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a sample holds at least one item, not {self.size}")

    def info(self) -> SamplingInfo:
        return SamplingInfo(
            size=self.size,
            seed=self.seed,
            rule=(
                f"for each check and unit, {self.size} items of its population (all when it has "
                f"fewer), sorted by the tool's instance and reference, drawn with Python's "
                f"random.Random seeded with '{self.seed}/CHECK/UNIT'; the same seed gives the "
                "same sample"
            ),
        )


class SamplingInfo(BaseModel):
    """The sample the report carries: its size, its seed and how it was drawn."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=1, description="items drawn per check and unit")
    seed: str
    rule: str


def draw(
    items: Sequence[tuple[str, T]], request: SampleRequest, check_id: str, unit: str | None
) -> list[T]:
    """``request.size`` of ``items`` (key, item), in key order; every item when there are
    fewer. Keys are expected to be unique; equal keys keep the order given."""
    ordered = sorted(items, key=lambda pair: pair[0])
    rng = random.Random(f"{request.seed}/{check_id}/{unit or ''}")  # noqa: S311 - not security
    chosen = sorted(rng.sample(range(len(ordered)), min(request.size, len(ordered))))
    return [ordered[index][1] for index in chosen]
