"""What a reward scores, and the one method every reward answers.

A `RewardItem` is a decision point seen as text: the task, the turns so far
(action, observation) and optionally a candidate action not yet taken. Every
reward (local model, LLM judge, combinations) implements `Reward.score` and its
async twin over a batch of items; higher is better, roughly in [0, 1].

The `Formatter` turns an item into text. A trained model saves its formatter
with itself, so the text it scores is the text it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from trajgraph.render import render_prefix, steps_to_turns
from trajgraph.store.text import utf8_text


@dataclass(frozen=True)
class RewardItem:
    """A task, the (action, observation) turns so far, and an optional candidate action."""

    task: str
    turns: tuple[tuple[str, str], ...] = ()
    action: str | None = None

    def __post_init__(self) -> None:
        # Callers build turns from lists (JSON, search nodes); keep the item hashable. Text a
        # tokenizer cannot take (a lone surrogate) gets the store's one rule, utf8_text.
        object.__setattr__(self, "task", utf8_text(str(self.task)))
        object.__setattr__(self, "turns", tuple((utf8_text(str(a)), utf8_text(str(o))) for a, o in self.turns))
        if self.action is not None:
            object.__setattr__(self, "action", utf8_text(str(self.action)))

    @property
    def text(self) -> str:
        """The default rendering (`render_prefix`); a model may format with its own settings."""
        return render_prefix(self.task, self.turns, self.action)

    @classmethod
    def from_steps(
        cls, task: str, steps: Iterable[Any], action: str | None = None, decision_nodes: Sequence[str] | None = None
    ) -> RewardItem:
        """An item from recorded `Step`s (one turn per decision step)."""
        return cls(task, tuple(steps_to_turns(steps, decision_nodes)), action)


@dataclass(frozen=True)
class Formatter:
    """How an item becomes model input: a head (the task) and a body (turns + candidate).

    The model's tokenizer keeps the head's first tokens and the body's *last*
    tokens, so the newest steps and the candidate survive truncation.
    `max_turns` keeps only the newest turns; `max_field_chars` clips each
    action/observation (long tool outputs would otherwise crowd out the rest).
    """

    template: str = "prefix-v1"
    max_turns: int | None = None
    max_field_chars: int | None = 1000

    def parts(self, item: RewardItem) -> tuple[str, str]:
        """(head, body), laid out exactly as `render_prefix` (head + newline + body)."""
        turns, first = item.turns, 1
        if self.max_turns is not None and len(turns) > self.max_turns:
            first = len(turns) - self.max_turns + 1  # keep the original numbers: "[7]" is still step 7
            turns = turns[len(turns) - self.max_turns :]
        clip = self._clip
        lines = []
        for i, (a, o) in enumerate(turns, first):
            lines.append(f"[{i}] Action: {clip(a)}")
            if o:
                lines.append(f"[{i}] Observation: {clip(o)}")
        if item.action is not None:
            lines.append(f"Candidate: {clip(item.action)}")
        return f"Task: {clip(item.task)}", "\n".join(lines)

    def text(self, item: RewardItem) -> str:
        head, body = self.parts(item)
        return f"{head}\n{body}" if body else head

    def _clip(self, s: str) -> str:
        # Keep both ends of a long field: a tool output's verdict is often at its end.
        n = self.max_field_chars
        return s if n is None or len(s) <= n else s[: n // 2] + " … " + s[len(s) - n // 2 :]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Formatter:
        return cls(**{k: data[k] for k in ("template", "max_turns", "max_field_chars") if k in data})


@runtime_checkable
class Reward(Protocol):
    """Scores decision points; higher is better, roughly in [0, 1]. Batched."""

    def score(self, items: Sequence[RewardItem]) -> list[float]: ...

    async def ascore(self, items: Sequence[RewardItem]) -> list[float]: ...


__all__ = ["RewardItem", "Reward", "Formatter"]
