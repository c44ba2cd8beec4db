"""What routing by prompt prefix saves conversations when several workers hold a model
(a diagnostic, not a row of bench.run).

    .venv/bin/python -m bench.affinity [--chats 4] [--turns 5]

One Redis, two workers (both holding the demo model, NUM_PARALLEL=2, one llama.cpp thread each:
two workers on two cores), and two gateways in front of the same workers: one with
HERD_PREFIX_ROUTING=1 (a chat's next turn goes to the worker that took its previous one while
that worker has a sequence free), one with 0 (whichever worker claims it first, as before). Chats
with a long system prompt of their own are played turn by turn, one request at a time, the two
sides' chats interleaved in a random order each turn (seeded) so drift hits both. Printed per
side, over the turns after the first: how many found their history already decoded, and the
time to the first streamed token. With `--concurrent`, each turn plays one side's chats all at
once, then the other side's (alternating which goes first), and adds the mean wall time of a
side's round: routing under load, where a chat's worker may be full. Answers are 96 tokens:
with much shorter ones a worker a turn behind would miss less than the 65 tokens every prompt
decodes again anyway, and look the same.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai

from tests.stack import gateway_pair

MODEL = "smollm2:135m"
TAIL = 65  # a prompt's last tokens are always decoded again (worker/kept_cells.py)
QUESTIONS = ["Name one.", "Another one?", "Which is the oldest?", "Which is the largest?", "And the last?",
             "Tell me more.", "Why?", "Anything else?"]
TOPICS = ["rivers", "mountains", "bridges", "lighthouses", "castles", "deserts", "islands", "forests",
          "volcanoes", "glaciers", "canyons", "lakes"]


class Chat:
    def __init__(self, base_url: str, topic: str) -> None:
        self.sdk = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=300)
        facts = " ".join(f"Fact {i} about {topic}: it is entry {i} of the {topic} list." for i in range(30))
        self.messages: list[Any] = [{"role": "system", "content": f"You answer questions about {topic}. {facts}"}]

    def turn(self, question: str, answer_tokens: int) -> tuple[float, bool]:
        """(seconds to the first streamed token, whether the whole history was found decoded)."""
        self.messages.append({"role": "user", "content": question})
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        usage = None
        for chunk in self.sdk.chat.completions.create(model=MODEL, messages=self.messages, max_tokens=answer_tokens,
                                                      temperature=0, stream=True,
                                                      stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - started
                parts.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        self.messages.append({"role": "assistant", "content": "".join(parts)})
        assert usage is not None and usage.prompt_tokens_details is not None
        # All but the tail: a worker a turn behind finds less, by the last answer and question.
        found = (usage.prompt_tokens_details.cached_tokens or 0) >= usage.prompt_tokens - TAIL
        return first or time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=4, help="chats per side")
    parser.add_argument("--turns", type=int, default=5, choices=range(2, len(QUESTIONS) + 1))
    parser.add_argument("--answer-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrent", action="store_true",
                        help="each turn, one side's chats all at once, then the other's (load, not latency)")
    args = parser.parse_args()
    if 2 * args.chats > len(TOPICS):
        parser.error(f"at most {len(TOPICS) // 2} chats per side")
    with tempfile.TemporaryDirectory() as root, \
            gateway_pair(Path(root), workers=2, num_parallel=2, num_thread=1, prefix_routing=1,
                         second={"prefix_routing": 0}) as (routed, unrouted):
        routed.load_on_every_worker(MODEL)
        sides = {"routed": routed.base_url, "unrouted": unrouted.base_url}
        chats = [(side, Chat(url, TOPICS[2 * i + j])) for i in range(args.chats)
                 for j, (side, url) in enumerate(sides.items())]
        results: dict[str, list[tuple[float, bool]]] = {side: [] for side in sides}
        round_seconds: dict[str, list[float]] = {side: [] for side in sides}
        shuffle = random.Random(args.seed).shuffle
        for turn, question in enumerate(QUESTIONS[:args.turns]):
            if args.concurrent:  # each side's chats all at once, the sides in turn (alternating first)
                for side in (list(sides) if turn % 2 == 0 else list(sides)[::-1]):
                    mine = [chat for s, chat in chats if s == side]
                    started = time.perf_counter()
                    with ThreadPoolExecutor(len(mine)) as pool:
                        outcomes = list(pool.map(Chat.turn, mine, [question] * len(mine),
                                                 [args.answer_tokens] * len(mine)))
                    if turn > 0:
                        results[side].extend(outcomes)
                        round_seconds[side].append(time.perf_counter() - started)
                continue
            order = list(chats)
            shuffle(order)  # users come back in no set order (a fixed one lets workers alternate in step)
            for side, chat in order:
                outcome = chat.turn(question, args.answer_tokens)
                if turn > 0:
                    results[side].append(outcome)
    how = "each side's chats at once" if args.concurrent else "one request at a time"
    print(f"{args.chats} chats per side, {args.turns} turns, {args.answer_tokens}-token answers, {how}; "
          "turns after the first:")
    print("| side | found history | TTFT p50 (ms) | TTFT mean (ms) | round wall time mean (s) |")
    print("|---|---|---|---|---|")
    for side, rows in results.items():
        waits = [t * 1000 for t, _ in rows]
        hits = sum(found for _, found in rows)
        wall = f"{statistics.fmean(round_seconds[side]):.2f}" if round_seconds[side] else "—"
        print(f"| {side} | {hits}/{len(rows)} | {statistics.median(waits):.0f} | {statistics.fmean(waits):.0f} "
              f"| {wall} |")
    for name, measure in (("p50", statistics.median), ("mean", statistics.fmean)):
        ratio = measure(t for t, _ in results["unrouted"]) / measure(t for t, _ in results["routed"])
        print(f"TTFT {name}, unrouted / routed: {ratio:.2f}x")


if __name__ == "__main__":
    main()
