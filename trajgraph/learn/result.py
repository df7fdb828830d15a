"""What a training run hands back: `TrainResult` (the folder, the method, its card), and how a card
names its source runs. Shared by the head (`train.py`) and the language-model path (`lm.py`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainResult:
    """Where the trained policy went and what it learned from."""

    path: Path
    method: str
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> dict[str, Any]:
        return {"name": self.card.get("name"), "hash": self.card.get("hash"), "round": self.card.get("round")}

    @property
    def improved(self) -> bool:
        """Did training make the policy better on its held-out check? (`evolve` should promote only such a version.)
        A card without the field (the TRL methods) counts as improved."""
        return bool(self.card.get("improved", True))


def source_summary(run_ids: Iterable[str]) -> dict[str, Any]:
    """How a card names its source runs: the count, a digest of the sorted ids, and the first few."""
    ids = sorted(set(run_ids))
    return {"count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "first": ids[:10]}
