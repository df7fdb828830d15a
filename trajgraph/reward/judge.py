"""LLMJudge: an LLM rates a trajectory prefix 0-10 after a short reflection, as in LATS.

LATS (Zhou et al., "Language Agent Tree Search Unifies Reasoning, Acting and
Planning in Language Models", ICML 2024) evaluates a node by prompting the LLM
to reflect on the trajectory and end with a correctness score from 1 to 10,
which becomes the node's value (score / 10). Here any litellm model string
works (`openai/...`, `ollama/...`, an OpenAI-compatible server via `api_base`);
calls run concurrently, bounded by `max_concurrency`. Tests use litellm's
`mock_response`, never a paid API.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from trajgraph._internal.aio import run_sync
from trajgraph._internal.hermetic import alitellm
from trajgraph.reward.base import Formatter, RewardItem

T = TypeVar("T")

PROMPT = """You are judging an AI agent that works on a task step by step.
Read the task and the trajectory so far{candidate_note}. Reflect briefly: is the agent making progress towards \
solving the task, has it made a mistake it cannot recover from, is it stuck or repeating itself?
Then rate how likely this trajectory is to end in success.

{text}

Answer in exactly this format:
Reflection: <one to three sentences>
Score: <an integer from 0 (certain failure) to 10 (certain success)>"""

_SCORE = re.compile(r"score[^0-9\n]{0,30}?(\d+(?:\.\d+)?)(\s*(?:/|out of)\s*(\d+))?", re.IGNORECASE)
_FRACTION = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*(10|100)\b", re.IGNORECASE)
_LONE = re.compile(r"^\W*(\d+(?:\.\d+)?)\W*$")
_REFLECTION = re.compile(r"reflection\s*[:\-]\s*(.*?)(?=\n\s*\**\s*score|\Z)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Judgement:
    """One judged item: score in [0, 1] (`default` when the reply held no score), the reflection, the reply."""

    score: float
    reflection: str
    raw: str
    parsed: bool = True


def parse_judgement(text: str, default: float = 0.0) -> Judgement:
    """Find the 0-10 score in a free-form reply: "Score: 7", "score is 7/10", "**Score**: 8.5", a lone "6"."""
    text = text or ""
    value: float | None = None
    scale = 10.0
    matches = list(_SCORE.finditer(text))
    if matches:
        m = matches[-1]  # the conclusion comes last; earlier numbers may be quoted from the trajectory
        value = float(m.group(1))
        if m.group(3):
            scale = float(m.group(3))
    else:
        fractions = list(_FRACTION.finditer(text))
        if fractions:
            value, scale = float(fractions[-1].group(1)), float(fractions[-1].group(2))
        else:
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            lone = _LONE.match(lines[-1]) if lines else None
            value = float(lone.group(1)) if lone else None
    m_ref = _REFLECTION.search(text)
    reflection = (m_ref.group(1) if m_ref else _SCORE.sub("", text)).strip().strip("*").strip()[:1000]
    if value is None or scale <= 0:
        return Judgement(default, reflection, text, parsed=False)
    return Judgement(min(max(value / scale, 0.0), 1.0), reflection, text)


class LLMJudge:
    """A `Reward` that asks an LLM (through litellm) for a 0-10 score with a short reflection.

    >>> judge = LLMJudge("openai/gpt-4o-mini")
    >>> judge.score([RewardItem("find the key", (("go north", "a locked door"),))])
    [0.4]

    Extra keyword arguments go to `litellm.acompletion` (e.g. `mock_response` in tests).
    A reply without a recognisable score counts as `default`.
    """

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        max_concurrency: int = 8,
        prompt: str = PROMPT,
        formatter: Formatter | None = None,
        default: float = 0.0,
        **completion_kwargs: Any,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_concurrency = max(1, max_concurrency)
        self.prompt = prompt
        self.formatter = formatter or Formatter()
        self.default = default
        self.completion_kwargs = completion_kwargs
        self.calls = 0
        self.unparsed = 0  # replies that held no score

    def render(self, item: RewardItem) -> str:
        note = ", and a candidate next action it is considering" if item.action is not None else ""
        return self.prompt.format(candidate_note=note, text=self.formatter.text(item))

    async def ajudge(self, items: Sequence[RewardItem]) -> list[Judgement]:
        litellm = await alitellm()  # heavy: imported off the event loop

        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(item: RewardItem) -> Judgement:
            async with gate:
                kwargs: dict[str, Any] = dict(self.completion_kwargs)
                if self.api_base is not None:
                    kwargs["api_base"] = self.api_base
                response = await litellm.acompletion(
                    model=self.model,
                    messages=[{"role": "user", "content": self.render(item)}],
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    **kwargs,
                )
            self.calls += 1
            judgement = parse_judgement(response.choices[0].message.content or "", self.default)
            self.unparsed += not judgement.parsed
            return judgement

        return list(await asyncio.gather(*(one(i) for i in items)))

    def judge(self, items: Sequence[RewardItem]) -> list[Judgement]:
        return run_sync(self.ajudge(items))

    async def ascore(self, items: Sequence[RewardItem]) -> list[float]:
        return [j.score for j in await self.ajudge(items)]

    def score(self, items: Sequence[RewardItem]) -> list[float]:
        return [j.score for j in self.judge(items)]

    def __repr__(self) -> str:
        return f"LLMJudge({self.model!r})"


__all__ = ["LLMJudge", "Judgement", "parse_judgement", "PROMPT"]
