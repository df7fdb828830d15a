"""LLMJudge through litellm's mock_response (no paid API, no network)."""

from __future__ import annotations

import asyncio

import pytest

from trajgraph.reward import LLMJudge, Reward, RewardItem
from trajgraph.reward.judge import parse_judgement

ITEM = RewardItem("find the key", (("go north", "a locked door"),), "open door")


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Reflection: good progress.\nScore: 7", 0.7),
        ("Reflection: the agent is stuck.\n**Score:** 2/10", 0.2),
        ("The trajectory looks right. Thus the correctness score is 9", 0.9),
        ("reflection - fine\nscore = 8.5", 0.85),
        ("It reached room 3 of 5 and then fell. Score: 1", 0.1),  # earlier numbers are not the score
        ("I'd rate it 6 out of 10.", 0.6),
        ("Score: 70/100", 0.7),
        ("Score: 14", 1.0),  # clamped
        ("some thoughts\n4", 0.4),  # a lone number on the last line
    ],
)
def test_parse_finds_the_score(reply: str, score: float) -> None:
    judgement = parse_judgement(reply)
    assert judgement.parsed and judgement.score == pytest.approx(score)


def test_parse_keeps_the_reflection_and_falls_back_to_default() -> None:
    j = parse_judgement("Reflection: it opened the wrong door, twice.\nScore: 3")
    assert j.reflection == "it opened the wrong door, twice."
    bad = parse_judgement("I cannot judge this.", default=0.5)
    assert not bad.parsed and bad.score == 0.5 and bad.raw == "I cannot judge this."


def test_judge_scores_through_litellm_mock_response() -> None:
    judge = LLMJudge("openai/gpt-4o-mini", mock_response="Reflection: on track.\nScore: 8")
    assert isinstance(judge, Reward)
    assert judge.score([ITEM, RewardItem("t")]) == [0.8, 0.8]
    assert asyncio.run(judge.ascore([ITEM])) == [0.8]
    (j,) = judge.judge([ITEM])
    assert j.reflection == "on track." and judge.calls == 4


def test_judge_prompt_shows_the_trajectory_and_candidate() -> None:
    judge = LLMJudge("openai/x")
    prompt = judge.render(ITEM)
    assert "Task: find the key" in prompt and "[1] Observation: a locked door" in prompt
    assert "Candidate: open door" in prompt and "candidate next action" in prompt
    assert "candidate next action" not in judge.render(RewardItem("t"))


def test_unparseable_replies_count_as_default() -> None:
    judge = LLMJudge("openai/gpt-4o-mini", mock_response="no idea", default=0.25)
    assert judge.score([ITEM]) == [0.25] and judge.unparsed == 1


def test_sync_score_works_inside_a_running_event_loop() -> None:
    judge = LLMJudge("openai/gpt-4o-mini", mock_response="Score: 5")

    async def inside() -> list[float]:
        return judge.score([ITEM])  # a sync caller inside async code: runs on a helper thread

    assert asyncio.run(inside()) == [0.5]


def test_concurrency_is_bounded() -> None:
    import litellm

    live = peak = 0
    real = litellm.acompletion

    async def slow(**kwargs):
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.01)
        live -= 1
        return await real(**kwargs)

    judge = LLMJudge("openai/gpt-4o-mini", mock_response="Score: 5", max_concurrency=3)
    litellm.acompletion, saved = slow, litellm.acompletion
    try:
        assert judge.score([ITEM] * 10) == [0.5] * 10
    finally:
        litellm.acompletion = saved
    assert peak == 3
