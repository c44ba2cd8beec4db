"""What kept cells save a chat's next turn (a diagnostic, not a row).

    .venv/bin/python -m bench.chat_turns [--turns 6] [--answer-tokens 96]

A conversation is played turn by turn on Herd's Engine in this process, three ways, in
rotating order: `kept` (each turn's prompt starts with the previous turn's prompt and answer,
still in the sequence's cells), `from RAM` (an unrelated request took the only sequence
between turns; its cells were saved to host memory and are copied back, HERD_CACHE_RAM) and
`decoded` (the same, with no host memory: the whole prompt is decoded, as Herd did before it
kept cells). Printed per turn: prompt tokens, tokens found, and the prompt's evaluation time
(admission to the first token's logits) each way.
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
    engines = {side: Engine(str(demo_gguf()), n_parallel=1, ctx_per_seq=4096, n_threads=args.threads,
                            cache_ram_mib=0 if side == "decoded" else 1024)
               for side in ("kept", "from RAM", "decoded")}
    messages = [("system", SYSTEM)]
    print("| turn | prompt tokens | found kept / from RAM | prompt eval kept (ms) | from RAM (ms) | decoded (ms) |\n"
          "|---|---|---|---|---|---|")
    try:
        for turn, question in enumerate(QUESTIONS[: args.turns], start=1):
            messages.append(("user", question))
            prompt = chatml(messages)
            finished: dict[str, Finished] = {}
            sides = list(engines)
            for side in sides[turn % 3 :] + sides[: turn % 3]:
                if side != "kept" and turn > 1:
                    run(engines[side], chatml([("user", "Say hi.")]), 1)  # takes the only sequence's cells
                text, finished[side] = run(engines[side], prompt, args.answer_tokens)
                if side == "kept":
                    answer = text
            messages.append(("assistant", answer))
            ms = {side: f.prompt_eval_duration_ns / 1e6 for side, f in finished.items()}
            print(f"| {turn} | {finished['kept'].prompt_eval_count} | {finished['kept'].prompt_cached_count} / "
                  f"{finished['from RAM'].prompt_cached_count} | {ms['kept']:.0f} | {ms['from RAM']:.0f} | "
                  f"{ms['decoded']:.0f} |")
    finally:
        for engine in engines.values():
            engine.close()


if __name__ == "__main__":
    main()
