"""A language model that learns from search data: SmolLM2-135M on TextWorld, SFT then DPO, on CPU.

The question (issue 18, item 8): base SmolLM2-135M-Instruct ranks TextWorld's
admissible commands at ~16% top-1 agreement with the walkthrough (random 8-9%).
Does training it with TRL on training-split decisions move it on *unseen* games?

Data (tw-simple; train seeds >= 1e6, test seeds < 1e6, disjoint games):
- every decision along the walkthrough of `--train-games` training games (the
  oracle's trajectory, what a successful search returns), as a compact prompt:
  objective + current observation + last actions + the admissible commands, and
  the command as the completion;
- DPO pairs at the same decisions: the walkthrough command against the command
  the SFT model ranks highest among the wrong ones (on-policy hard negatives, the
  pairs a search that tried the model's favourite and failed would record).

Training: TRL `SFTTrainer` (prompt/completion, loss on the completion only), then
`DPOTrainer` from the SFT weights; full fine-tune in float32 on CPU, short
sequences (`--max-length`). Evaluation on `--test-games` unseen games:
- walkthrough agreement: top-1 of the log-prob ranking of all admissible commands
  (`SmolLM2.score_replies`, as `rank_commands`), base vs SFT vs SFT+DPO vs the
  MiniLM ranker at argmax (the head's base policy);
- greedy success: whole episodes played at argmax, won / games.

Run: python benchmarks/lm_learning.py [--train-games 30] [--test-games 10] [--sft-steps 60] [--dpo-steps 30]
Reduced CPU plan in two parts: `--paired --save DIR` trains, ranks the test decisions with every
policy in turn and writes the SFT model to DIR (safetensors + tokenizer, no code); then
`--episodes-only DIR --episode-games 10` loads it with `trajgraph.learn.load_policy` and plays
whole greedy episodes on the same split's first unseen games (SFT, base, MiniLM ranker), writing
benchmarks/results/lm_learning_episodes.json after each game.
Prints a table and writes benchmarks/results/lm_learning.json. Timings are taken on whatever
the machine is doing; the JSON holds seconds per training step and per ranking decision.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

from _table import emit


def wilson(k: int, n: int, z: float = 1.96) -> str:
    """95% Wilson interval of k/n, as 'lo-hi%'."""
    if n == 0:
        return "-"
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return f"{100 * max(0, c - h):.0f}-{100 * min(1, c + h):.0f}%"


# -- data ------------------------------------------------------------------------------


def walkthrough_decisions(tasks: list[Any]) -> list[dict[str, Any]]:
    """Every decision along each game's walkthrough: the state the agent sees and the walkthrough's command."""
    from trajgraph.adapters.textworld_env import TextWorldEnv

    out = []
    for task in tasks:
        env = TextWorldEnv(task.make_graph.gamefile, fork="replay")
        frame = env.reset()
        history: list[Any] = []
        for _ in range(task.max_steps):
            if frame.done or not frame.admissible_commands:
                break
            state = {"task": frame.objective, "observation": frame.observation, "actions": list(frame.admissible_commands),
                     "history": history, "policy_commands": list(frame.policy_commands)}
            best = task.oracle(state)
            if best not in state["actions"]:
                break
            out.append({**state, "best": best, "game": task.id})
            frame = env.step(best)
            history = [*history, {"action": best, "observation": frame.observation}]
        env.close()
    return out


OBS_CHARS = 240  # set from --obs-chars: how much of the observation (and, unless --goal-chars, of the goal) the prompt keeps
GOAL_CHARS = -1  # set from --goal-chars: how much of the goal the prompt keeps (-1: as OBS_CHARS, 0: all of it)


def prompt(state: dict[str, Any], obs_chars: int | None = None) -> list[dict[str, str]]:
    """The compact prompt: goal, what the agent sees now, its last two actions, the commands it may type.

    A one-line system turn replaces SmolLM2's default one (fewer tokens, the same template)."""
    obs_chars = obs_chars or OBS_CHARS
    goal_chars = obs_chars if GOAL_CHARS < 0 else GOAL_CHARS or None
    last = "; ".join(str(h["action"]) for h in (state.get("history") or [])[-2:]) or "none"
    obs = " ".join(str(state.get("observation") or "").split())[:obs_chars]
    text = (f"Goal: {' '.join(str(state['task']).split())[:goal_chars]}\nYou see: {obs}\nLast actions: {last}\n"
            f"Commands: {' | '.join(state['actions'])}")
    return [{"role": "system", "content": "Play the text game: reply with one command."}, {"role": "user", "content": text}]


# -- models ----------------------------------------------------------------------------


def load(path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajgraph.policies.smollm import SmolLM2

    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, local_files_only=True, trust_remote_code=False,
                                                 dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    return SmolLM2(model, tokenizer, str(path), 0.0)


AUTOCAST = False  # set from --bf16: matmuls in bfloat16 (AMX on this CPU), weights stay float32


def autocast() -> Any:
    import contextlib

    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if AUTOCAST else contextlib.nullcontext()


def rank(lm: Any, state: dict[str, Any]) -> list[float]:
    """log P(command + <|im_end|> | prompt) for every admissible command, in one batched pass.

    As `SmolLM2.score_replies` (the prompt runs once, its KV cache is repeated over the
    commands), but the prompt pass keeps only its last position's logits: the 49k-word
    head over every prompt position was a fifth of a decision's cost."""
    import torch
    from transformers import DynamicCache

    ids = lm.chat_ids(prompt(state))
    replies = [lm.tokenizer(r, add_special_tokens=False)["input_ids"] + [lm.eos_id] for r in state["actions"]]
    model = lm.model
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"  # transformers 5 renamed it
    with torch.inference_mode(), autocast():
        cache = DynamicCache()
        head = model(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1, **{kw: cache})
        first = torch.log_softmax(head.logits[0, -1].float(), dim=-1)
        width = max(len(r) for r in replies)
        tokens = torch.tensor([r + [lm.eos_id] * (width - len(r)) for r in replies])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in replies])
        cache.batch_repeat_interleave(len(replies))
        out = model(input_ids=tokens, attention_mask=torch.cat([torch.ones(len(replies), len(ids), dtype=mask.dtype), mask], 1),
                    position_ids=torch.arange(len(ids), len(ids) + width).expand(len(replies), -1), use_cache=True, **{kw: cache})
        logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
        rest = logp.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
        return (first[tokens[:, 0]] + rest.sum(1)).tolist()


def agreement(choose: Any, decisions: list[dict[str, Any]]) -> tuple[int, float, float]:
    """(right, wall seconds per decision, CPU seconds per decision)."""
    t0, c0 = time.perf_counter(), time.process_time()
    right = sum(choose(d) == d["best"] for d in decisions)
    n = max(1, len(decisions))
    return right, (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def lm_chooser(lm: Any) -> Any:
    def choose(state: dict[str, Any]) -> str:
        scores = rank(lm, state)
        return state["actions"][max(range(len(scores)), key=scores.__getitem__)]
    return choose


def play(choose: Any, task: Any) -> tuple[bool, float, int]:
    """One greedy episode, at most `task.max_steps` decisions: (won, score fraction, decisions played)."""
    from trajgraph.adapters.textworld_env import TextWorldEnv, outcome_of

    env = TextWorldEnv(task.make_graph.gamefile, fork="replay")
    try:
        frame = env.reset()
        history: list[Any] = []
        for _ in range(task.max_steps):
            if frame.done or not frame.admissible_commands:
                break
            state = {"task": frame.objective, "observation": frame.observation, "actions": list(frame.admissible_commands),
                     "history": history}
            action = choose(state)
            frame = env.step(action)
            history = [*history, {"action": action, "observation": frame.observation}]
        return bool(frame.won), float(outcome_of(frame)), len(history)
    finally:
        env.close()


def episodes(choose: Any, tasks: list[Any]) -> tuple[int, float]:
    """Greedy episodes: won games and mean score fraction."""
    results = [play(choose, task) for task in tasks]
    return sum(r[0] for r in results), statistics.mean(r[1] for r in results)


def freeze_below(model: Any, top: int) -> int:
    """Train only the top `top` decoder layers and the final norm (0: everything); returns the trainable parameter count.

    The backward pass then stops at the lowest trained layer: on CPU that is most of a step's cost."""
    if top > 0:
        for p in model.parameters():
            p.requires_grad_(False)
        for module in [*model.model.layers[-top:], model.model.norm]:
            for p in module.parameters():
                p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(stage: str, model: Any, tokenizer: Any, rows: list[dict[str, Any]], args: argparse.Namespace, scratch: Path) -> tuple[Any, dict[str, Any]]:
    import datasets
    import trl

    common = dict(output_dir=str(scratch / stage), per_device_train_batch_size=args.batch, max_length=args.max_length, seed=0,
                  use_cpu=True, bf16=AUTOCAST, report_to="none", save_strategy="no", logging_steps=5, disable_tqdm=True, dataloader_num_workers=0)
    data = datasets.Dataset.from_list(rows)
    cfg: Any
    trainer: Any
    if stage == "sft":
        cfg = trl.SFTConfig(max_steps=args.sft_steps, learning_rate=args.sft_lr, lr_scheduler_type="cosine", warmup_steps=3, **common)
        trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=data, processing_class=tokenizer)
    else:
        cfg = trl.DPOConfig(max_steps=args.dpo_steps, learning_rate=args.dpo_lr, beta=args.beta, lr_scheduler_type="cosine", warmup_steps=2,
                            **common)
        trainer = trl.DPOTrainer(model=model, ref_model=copy.deepcopy(model).eval(), args=cfg, train_dataset=data, processing_class=tokenizer)
    t0, c0 = time.perf_counter(), time.process_time()
    result = trainer.train()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = int(result.global_step)
    losses = [round(h["loss"], 3) for h in trainer.state.log_history if "loss" in h]
    return trainer.model, {"rows": len(rows), "steps": steps, "loss": round(float(result.training_loss), 4), "loss_curve": losses,
                           "seconds": round(seconds, 1), "seconds_per_step": round(seconds / max(1, steps), 2),
                           "cpu_seconds_per_step": round(cpu / max(1, steps), 2),
                           "examples_per_step": args.batch}


def profile(args: argparse.Namespace, train_d: list[dict[str, Any]], test_d: list[dict[str, Any]]) -> None:
    """Time one ranking decision and one SFT step alone, float32 then bf16 autocast (wall and CPU seconds)."""
    import tempfile

    global AUTOCAST
    from trajgraph.learn.lm import base_model_dir

    lm = load(base_model_dir(None))
    lens = [len(lm.chat_ids(prompt(d))) for d in test_d]
    print(f"prompt tokens: mean {statistics.mean(lens):.0f}, max {max(lens)}; commands per decision "
          f"{statistics.mean(len(d['actions']) for d in test_d):.1f}", flush=True)
    for bf in (False, True, False, True):
        AUTOCAST = bf
        t0, c0 = time.perf_counter(), time.process_time()
        rank(lm, test_d[1])
        print(f"rank bf16={bf}: {time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU", flush=True)
    rows = [{"prompt": prompt(d), "completion": [{"role": "assistant", "content": d["best"]}]} for d in train_d[:16]]
    for bf in (False, True):
        AUTOCAST = bf
        model = load(base_model_dir(None)).model.train()
        if not model.config.architectures:
            model.config.architectures = [type(model).__name__]
        freeze_below(model, args.top_layers)
        args.sft_steps = 2
        with tempfile.TemporaryDirectory(prefix="lm-learning-") as scratch:
            _, t = train("sft", model, lm.tokenizer, rows, args, Path(scratch))
        print(f"sft bf16={bf}, batch {args.batch}, max_length {args.max_length}, top {args.top_layers} layers:", t, flush=True)


FIT = "lm_learning_fit.json"  # written next to the weights by --save: the run's settings (the prompt's --obs-chars) and training cost


def save(model: Any, tokenizer: Any, folder: Path, fit: dict[str, Any]) -> None:
    """The SFT model as a plain transformers folder (safetensors, tokenizer, config; no code), loaded back by
    `trajgraph.policies.load_lm_policy` as any trained policy folder."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    (folder / FIT).write_text(json.dumps(fit, indent=1, default=str))
    print(f"saved the SFT model to {folder}", flush=True)


def paired(args: argparse.Namespace, train_d: list[dict[str, Any]], test_d: list[dict[str, Any]], games: int, chance: float) -> None:
    """Train first, then rank each unseen decision with every policy back to back; the JSON is rewritten after each one.

    On a loaded machine a run may be cut short: the rows then cover the same first k decisions for every policy."""
    import json
    import tempfile

    from trajgraph.learn.lm import base_model_dir
    from trajgraph.policies import minilm_policy

    source = base_model_dir(None)
    base = load(source)
    model, tokenizer = load(source).model.train(), base.tokenizer
    base.model.eval()
    if not model.config.architectures:
        model.config.architectures = [type(model).__name__]
    timing: dict[str, Any] = {"trainable_parameters": freeze_below(model, args.top_layers)}
    policies: dict[str, Any] = {}
    rng = random.Random(0)
    policies["random"] = lambda s: rng.choice(s["actions"])
    minilm = minilm_policy(temperature=0)
    policies["MiniLM ranker, argmax"] = lambda s: minilm(s)["action"]
    policies["SmolLM2-135M base"] = lm_chooser(base)
    sft_rows = [{"prompt": prompt(d), "completion": [{"role": "assistant", "content": d["best"]}]} for d in train_d]
    with tempfile.TemporaryDirectory(prefix="lm-learning-") as scratch:
        model, timing["sft"] = train("sft", model, tokenizer, sft_rows, args, Path(scratch))
        print("sft", timing["sft"], flush=True)
        sft = type(base)(model.eval(), tokenizer, "sft", 0.0)
        policies["SmolLM2-135M SFT"] = lm_chooser(sft)
        if args.save:
            save(model, tokenizer, Path(args.save), {"settings": vars(args), "training": timing, "train_decisions": len(train_d)})
        if args.dpo_steps > 0:
            pairs = []
            for d in train_d[: args.dpo_decisions]:
                scores = rank(sft, d)
                wrong = max((i for i, a in enumerate(d["actions"]) if a != d["best"]), key=scores.__getitem__, default=None)
                if wrong is not None:
                    pairs.append({"prompt": prompt(d), "chosen": [{"role": "assistant", "content": d["best"]}],
                                  "rejected": [{"role": "assistant", "content": d["actions"][wrong]}]})
            dpo_model = copy.deepcopy(model).train()
            dpo_model, timing["dpo"] = train("dpo", dpo_model, tokenizer, pairs, args, Path(scratch))
            print("dpo", timing["dpo"], flush=True)
            policies["SmolLM2-135M SFT+DPO"] = lm_chooser(type(base)(dpo_model.eval(), tokenizer, "sft+dpo", 0.0))
    right = dict.fromkeys(policies, 0)
    wall = dict.fromkeys(policies, 0.0)
    cpu = dict.fromkeys(policies, 0.0)
    out = Path(__file__).parent / "results" / (args.out or "lm_learning.json")
    for k, d in enumerate(test_d, 1):
        for name, choose in policies.items():
            t0, c0 = time.perf_counter(), time.process_time()
            right[name] += choose(d) == d["best"]
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
        rows = [{"policy": n, "agreement": f"{right[n] / k:.0%}", "agreement_95ci": wilson(right[n], k), "right": right[n], "decisions": k,
                 "s_per_decision": round(wall[n] / k, 2), "cpu_s_per_decision": round(cpu[n] / k, 2)} for n in policies]
        done_games = len({x["game"] for x in test_d[:k]})
        payload = {"name": "lm_learning", "title": f"SmolLM2-135M learning TextWorld on CPU (paired, reduced): {len(train_d)} train decisions, "
                   f"{k}/{len(test_d)} test decisions ranked from {done_games} of {games} unseen games",
                   "rows": rows, "training": timing, "settings": vars(args), "chance": round(chance, 4),
                   "train_decisions": len(train_d), "test_decisions_ranked": k, "load_average": list(__import__("os").getloadavg())}
        out.write_text(json.dumps(payload, indent=1))
        print(k, {n: f"{right[n]}/{k}" for n in policies}, {n: round(wall[n] / k, 1) for n in policies}, flush=True)


def episodes_only(args: argparse.Namespace, folder: Path) -> None:
    """Whole greedy episodes on the unseen test games with the SFT model `--save` wrote, the base SmolLM2 and the
    MiniLM ranker at argmax: one game at a time, every policy in turn (load cancels), the JSON rewritten after each game.

    The games are the paired run's test split (`suite.tasks("test", n, 0)`, seeds 0..n-1), so the first
    `--episode-games` of the games its agreement was measured on; the prompt keeps the fit's `--obs-chars`."""
    import json
    import os

    global OBS_CHARS, GOAL_CHARS
    from trajgraph.adapters.textworld_env import TextWorldSuite
    from trajgraph.learn import load_policy
    from trajgraph.learn.lm import base_model_dir
    from trajgraph.policies import minilm_policy

    fit = json.loads((folder / FIT).read_text()) if (folder / FIT).is_file() else {}
    trained = fit.get("settings", {})
    OBS_CHARS, GOAL_CHARS = int(trained.get("obs_chars", args.obs_chars)), int(trained.get("goal_chars", -1))  # the prompt it was trained on
    t0 = time.perf_counter()
    tasks = TextWorldSuite().tasks("test", args.episode_games, 0)
    print(f"{len(tasks)} unseen games, max_steps {[t.max_steps for t in tasks]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    minilm = minilm_policy(temperature=0)
    policies: dict[str, Any] = {
        "MiniLM ranker, argmax": lambda s: minilm(s)["action"],
        "SmolLM2-135M base": lm_chooser(load(base_model_dir(None))),
        "SmolLM2-135M SFT": lm_chooser(load_policy(folder, mode="rank", temperature=0).model),  # the trained-policy loader: safetensors, no code
    }
    stats: dict[str, dict[str, Any]] = {n: {"won": 0, "scores": [], "decisions": 0, "wall": 0.0, "cpu": 0.0} for n in policies}
    games: list[dict[str, Any]] = []

    def timed(name: str) -> Any:
        def choose(state: dict[str, Any]) -> str:
            w, c = time.perf_counter(), time.process_time()
            try:
                return str(policies[name](state))
            finally:
                stats[name]["wall"] += time.perf_counter() - w
                stats[name]["cpu"] += time.process_time() - c
                stats[name]["decisions"] += 1
        return choose

    out = Path(__file__).parent / "results" / (args.out or "lm_learning_episodes.json")
    title, rows, extra = "", [], {}
    for g, task in enumerate(tasks, 1):
        for name in policies:
            won, score, n = play(timed(name), task)
            stats[name]["won"] += won
            stats[name]["scores"].append(score)
            games.append({"game": task.id, "max_steps": task.max_steps, "policy": name, "won": won, "score": round(score, 3), "decisions": n})
            print(games[-1], flush=True)
        rows = [{"policy": n, "won": f"{st['won']}/{g}", "won_95ci": wilson(st["won"], g), "mean_score": round(statistics.mean(st["scores"]), 3),
                 "decisions": st["decisions"], "s_per_decision": round(st["wall"] / max(1, st["decisions"]), 2),
                 "cpu_s_per_decision": round(st["cpu"] / max(1, st["decisions"]), 2)} for n, st in stats.items()]
        title = (f"SmolLM2-135M on TextWorld, greedy episodes (argmax, no search) on {g} of {len(tasks)} unseen games: "
                 f"SFT model from {folder.name} vs base vs MiniLM ranker")
        extra = {"model": str(folder), "fit": fit, "settings": vars(args), "obs_chars": OBS_CHARS, "goal_chars": GOAL_CHARS, "games_played": g, "games": games,
                 "load_average": list(os.getloadavg())}
        out.write_text(json.dumps({"title": title, "rows": rows, **extra}, indent=1, default=str))
    emit(out.stem, title, rows, extra)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-games", type=int, default=30)
    ap.add_argument("--test-games", type=int, default=10)
    ap.add_argument("--episode-games", type=int, default=10, help="unseen games played whole at argmax per policy")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--dpo-steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--sft-lr", type=float, default=1e-4)
    ap.add_argument("--dpo-lr", type=float, default=2e-5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--dpo-decisions", type=int, default=96, help="training decisions re-ranked by the SFT model for DPO pairs")
    ap.add_argument("--top-layers", type=int, default=8, help="train only the top N of 30 decoder layers (0: full fine-tune)")
    ap.add_argument("--episodes", default="MiniLM ranker, argmax,SmolLM2-135M SFT+DPO",
                    help="comma-separated policy names that also play whole episodes ('all' for every one)")
    ap.add_argument("--work", default="lm-learning-out")
    ap.add_argument("--out", default="", help="--paired / --episodes-only: the JSON under benchmarks/results/ it rewrites as it goes "
                    "(default lm_learning.json / lm_learning_episodes.json)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for training and ranking (weights stay float32)")
    ap.add_argument("--obs-chars", type=int, default=240, help="characters of the observation (and of the goal) kept in the prompt")
    ap.add_argument("--goal-chars", type=int, default=-1,
                    help="characters of the goal kept in the prompt (-1: --obs-chars; 0: the whole goal, which names the quest's items)")
    ap.add_argument("--paired", action="store_true",
                    help="reduced CPU plan: train SFT (then DPO) first, then rank each test decision with every policy in turn "
                         "(load cancels), writing the JSON after every decision")
    ap.add_argument("--save", default="", help="--paired: write the SFT model (safetensors + tokenizer) to this folder")
    ap.add_argument("--episodes-only", default="", metavar="DIR",
                    help="load the SFT model --save wrote and play --episode-games unseen games whole at argmax with it, "
                         "the base SmolLM2 and the MiniLM ranker; no training, no ranking of walkthrough decisions")
    ap.add_argument("--max-decisions", type=int, default=0, help="rank only the first N test decisions (0: all)")
    ap.add_argument("--profile", action="store_true", help="time one ranking decision and one SFT step (float32 and bf16), then stop")
    args = ap.parse_args()
    global OBS_CHARS, GOAL_CHARS, AUTOCAST
    OBS_CHARS, GOAL_CHARS, AUTOCAST = args.obs_chars, args.goal_chars, args.bf16

    import tempfile

    import torch

    from trajgraph.adapters.textworld_env import TextWorldSuite
    from trajgraph.learn.lm import base_model_dir
    from trajgraph.policies import minilm_policy

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.episodes_only:
        episodes_only(args, Path(args.episodes_only))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    suite = TextWorldSuite()
    t0 = time.perf_counter()
    train_tasks, test_tasks = suite.tasks("train", args.train_games, 0), suite.tasks("test", args.test_games, 0)
    train_d, test_d = walkthrough_decisions(train_tasks), walkthrough_decisions(test_tasks)
    print(f"data: {len(train_d)} training decisions from {len(train_tasks)} games, {len(test_d)} test decisions from "
          f"{len(test_tasks)} unseen games ({time.perf_counter() - t0:.0f} s)", flush=True)
    chance = statistics.mean(1 / len(d["actions"]) for d in test_d)
    if args.profile:
        profile(args, train_d, test_d)
        return
    if args.paired:
        paired(args, train_d, test_d[: args.max_decisions or None], len(test_tasks), chance)
        return
    ep_tasks = test_tasks[: args.episode_games]

    rows: list[dict[str, Any]] = []
    timing: dict[str, Any] = {}

    play = args.episodes

    def measure(name: str, choose: Any) -> None:
        right, per, cpu = agreement(choose, test_d)
        t1 = time.perf_counter()
        ep = ep_tasks if play == "all" or name in play else []
        won, mean = episodes(choose, ep) if ep else (0, float("nan"))
        rows.append({"policy": name, "agreement": f"{right / len(test_d):.0%}", "agreement_95ci": wilson(right, len(test_d)),
                     "won": f"{won}/{len(ep)}" if ep else "-", "won_95ci": wilson(won, len(ep)), "mean_score": round(mean, 3) if ep else "-",
                     "s_per_decision": round(per, 2), "cpu_s_per_decision": round(cpu, 2)})
        print(rows[-1], f"(episodes {time.perf_counter() - t1:.0f} s)", flush=True)

    rng = random.Random(0)
    measure("random", lambda s: rng.choice(s["actions"]))
    minilm = minilm_policy(temperature=0)
    measure("MiniLM ranker, argmax", lambda s: minilm(s)["action"])
    source = base_model_dir(None)
    base = load(source)
    measure("SmolLM2-135M base", lm_chooser(base))

    model, tokenizer = base.model.train(), base.tokenizer
    if not model.config.architectures:
        model.config.architectures = [type(model).__name__]
    timing["trainable_parameters"] = freeze_below(model, args.top_layers)
    sft_rows = [{"prompt": prompt(d), "completion": [{"role": "assistant", "content": d["best"]}]} for d in train_d]
    with tempfile.TemporaryDirectory(prefix="lm-learning-") as scratch:
        model, timing["sft"] = train("sft", model, tokenizer, sft_rows, args, Path(scratch))
        print("sft", timing["sft"], flush=True)
        sft = type(base)(model.eval(), tokenizer, "sft", 0.0)
        measure("SmolLM2-135M SFT", lm_chooser(sft))
        # on-policy hard negatives: the SFT model's favourite wrong command at each training decision
        # (one ranking per decision: `--dpo-decisions` of them, the rest of the training set is not re-ranked)
        pairs = []
        for d in train_d[: args.dpo_decisions] if args.dpo_steps > 0 else []:
            scores = rank(sft, d)
            wrong = max((i for i, a in enumerate(d["actions"]) if a != d["best"]), key=scores.__getitem__, default=None)
            if wrong is not None:
                pairs.append({"prompt": prompt(d), "chosen": [{"role": "assistant", "content": d["best"]}],
                              "rejected": [{"role": "assistant", "content": d["actions"][wrong]}]})
        if args.dpo_steps > 0:
            model, timing["dpo"] = train("dpo", model.train(), tokenizer, pairs, args, Path(scratch))
            print("dpo", timing["dpo"], flush=True)
            dpo = type(base)(model.eval(), tokenizer, "sft+dpo", 0.0)
            measure("SmolLM2-135M SFT+DPO", lm_chooser(dpo))
        model.save_pretrained(str(work / "smollm2-tw"), safe_serialization=True)
        tokenizer.save_pretrained(str(work / "smollm2-tw"))
    emit("lm_learning", f"SmolLM2-135M learning TextWorld on CPU: {len(train_d)} train decisions ({args.train_games} games), "
         f"{len(test_d)} test decisions ({args.test_games} unseen games), episodes on {len(ep_tasks)}", rows,
         {"training": timing, "settings": vars(args), "chance": round(chance, 4), "train_decisions": len(train_d),
          "test_decisions": len(test_d)})


if __name__ == "__main__":
    main()
