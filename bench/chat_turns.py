"""What reusing a sequence's cells saves a chat's next turn (a diagnostic, not a row).

    .venv/bin/python -m bench.chat_turns [--turns 6] [--answer-tokens 96]

A conversation is played turn by turn on Herd's Engine in this process (warm: each turn's
prompt starts with the previous turn's prompt and answer, still in the sequence's cells). Each
turn's exact prompt is also run on a second engine right after an unrelated request took its
only sequence (cold: the whole prompt is decoded, as before Herd kept cells). The sides
alternate. Printed per turn: prompt tokens, tokens found in the cells, and the prompt's
evaluation time (admission to the first token's logits) both ways.
"""

from __future__ import annotations

import argparse

from herd.demo import demo_gguf
from herd.protocol import SamplingOptions
from worker.engine import Engine, Failed, Finished, TextOut

SYSTEM = "You are a patient tutor. Answer in a few sentences."
QUESTIONS = [
    "What is photosynthesis?",
    "Why are leaves green?",
    "What happens to leaves in autumn?",
    "Do all plants photosynthesise?",
    "How do cacti survive in deserts?",
    "What is the oldest tree on Earth?",
    "How do trees talk to each other?",
    "What would happen without plants?",
]


def chatml(messages: list[tuple[str, str]]) -> str:
    """SmolLM2's chat template, ready for the assistant's turn."""
    return "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in messages) + "<|im_start|>assistant\n"


def run(engine: Engine, prompt: str, tokens: int) -> tuple[str, Finished]:
    engine.add("turn", prompt, SamplingOptions(temperature=0.0, num_predict=tokens))
    parts: list[str] = []
    while True:
        for event in engine.step():
            if isinstance(event, TextOut):
                parts.append(event.text)
            elif isinstance(event, Finished):
                return "".join(parts), event
            elif isinstance(event, Failed):
                raise RuntimeError(event.message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=6, choices=range(1, len(QUESTIONS) + 1))
    parser.add_argument("--answer-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    warm = Engine(str(demo_gguf()), n_parallel=1, ctx_per_seq=4096, n_threads=args.threads)
    cold = Engine(str(demo_gguf()), n_parallel=1, ctx_per_seq=4096, n_threads=args.threads)
    messages = [("system", SYSTEM)]
    print("| turn | prompt tokens | found in cells | prompt eval warm (ms) | cold (ms) | warm / cold |\n"
          "|---|---|---|---|---|---|")
    try:
        for turn, question in enumerate(QUESTIONS[: args.turns], start=1):
            messages.append(("user", question))
            prompt = chatml(messages)
            finished: dict[str, Finished] = {}
            for side in ("warm", "cold") if turn % 2 else ("cold", "warm"):
                if side == "cold":
                    run(cold, chatml([("user", "Say hi.")]), 1)  # takes the only sequence's cells
                    _, finished["cold"] = run(cold, prompt, args.answer_tokens)
                else:
                    answer, finished["warm"] = run(warm, prompt, args.answer_tokens)
            messages.append(("assistant", answer))
            w, c = finished["warm"], finished["cold"]
            warm_ms, cold_ms = w.prompt_eval_duration_ns / 1e6, c.prompt_eval_duration_ns / 1e6
            print(f"| {turn} | {w.prompt_eval_count} | {w.prompt_cached_count} | {warm_ms:.0f} | {cold_ms:.0f} | "
                  f"{warm_ms / cold_ms:.2f} |")
    finally:
        warm.close()
        cold.close()


if __name__ == "__main__":
    main()
