"""Continuous batching over one llama.cpp context.

One loaded model is one context with `n_seq_max = n_parallel` and a split KV cache, so
each sequence id owns `ctx_per_seq` cells. Every `step()` builds one batch (a token for each
generating sequence, then prompt chunks of sequences still in prefill), calls
`llama_decode` once, and samples each sequence from its own logits row with its own
sampler chain. Sequences join and leave between steps. All methods must be called from
one thread: llama.cpp contexts are not thread-safe, and nothing here takes a lock.

While sequences generate, a step takes only a time slice of new prompts (`PrefillPacer`). A
finished request's cells stay for the next request that starts the same way (`KeptCells`).

A sequence's context is `limit` cells. As in Ollama, a prompt that does not fit is truncated
(`truncate`) and a generation that fills it shifts (`shift`): both keep the first `num_keep`
cells and drop what follows them, only ever in that sequence's own cells.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from herd.config import DEFAULT_CACHE_RAM_MIB, DEFAULT_PREFILL_SLICE_MS
from herd.protocol import OutputFormat, SamplingOptions, TokenLogprob
from worker.grammar import GrammarError, gbnf
from worker.kept_cells import KeptCells
from worker.llama_model import LoadedWeights, context_params, lib
from worker.logprobs import MAX_TOP, logprob_entry
from worker.prefill_pacer import MIN_CHUNK, PrefillPacer
from worker.sampling import GrammarDeadEnd, GrammarRejected, SequenceSampler
from worker.text_stream import TextStream

TOO_LONG = "the input length exceeds the context length"
EMPTY = "the input is empty after tokenization"
PREDICT_CAP = 10  # num_predict is at most this many contexts (Ollama's cap), so a shifting sequence ends

log = logging.getLogger(__name__)


class NoFreeSlot(RuntimeError):
    """Every sequence slot is busy; the caller should hold the job until one frees up."""


class TextOut(msgspec.Struct, frozen=True):
    request_id: str
    text: str
    logprobs: list[TokenLogprob] | None = None  # the tokens whose text begins in `text`, if asked


class Finished(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    done_reason: Literal["stop", "length"]
    prompt_eval_count: int
    prompt_cached_count: int = 0  # of those, tokens whose cells an earlier request left (not decoded again)
    prompt_eval_duration_ns: int  # admission to the end of the decode that finished the prompt
    eval_count: int  # generated tokens, not counting the end-of-generation token
    eval_duration_ns: int  # first sampled token to the end


class Failed(msgspec.Struct, frozen=True):
    request_id: str
    message: str
    status: int = 500


EngineEvent = TextOut | Finished | Failed


class _Seq:
    """One admitted request, bound to one sequence id of the context."""

    __slots__ = (
        "cacheable",
        "decoded",
        "fed",
        "generated",
        "held_logprobs",
        "keep",
        "limit",
        "logprobs",
        "n_past",
        "next_token",
        "num_predict",
        "prompt",
        "released",
        "request_id",
        "reused",
        "sampler",
        "seq_id",
        "shift",
        "stream",
        "t_admit",
        "t_first",
        "t_prefilled",
    )

    def __init__(
        self,
        request_id: str,
        seq_id: int,
        prompt: list[int],
        options: SamplingOptions,
        sampler: SequenceSampler,
        limit: int,
        logprobs: int | None = None,
        *,
        keep: int = 0,
        shift: bool = False,
    ) -> None:
        self.request_id = request_id
        self.seq_id = seq_id
        self.prompt = prompt
        self.sampler = sampler
        self.stream = TextStream(options.stop)
        self.limit = limit  # positions this sequence may fill
        self.keep = keep  # leading cells a context shift never drops
        self.shift = shift  # a full context shifts instead of ending the answer
        cap = PREDICT_CAP * limit
        self.num_predict = options.num_predict if 0 < options.num_predict <= cap else cap
        self.reused = 0  # leading prompt tokens whose cells were left by an earlier request
        self.fed = 0  # prompt tokens decoded so far (or reused)
        self.n_past = 0  # cells this sequence holds in the KV cache
        self.next_token = -1  # sampled, not yet decoded; -1 while in prefill
        self.generated = 0
        self.decoded: list[int] = []  # generated tokens whose cells are in the KV cache
        self.cacheable = True  # cell i holds token i (prompt, then decoded) until a shift moves them
        self.t_admit = time.perf_counter_ns()
        self.t_prefilled = 0
        self.t_first = 0
        # Logprobs go out with the text their token released: entries wait here with the
        # offset (in decoded characters) where their token's text begins, and leave once
        # the client has been sent text past that offset. Ones left at the end belong to a
        # stop string and are dropped with it.
        self.logprobs = logprobs  # alternatives per token; None: not asked
        self.held_logprobs: list[tuple[int, TokenLogprob]] = []
        self.released = 0  # characters of text sent

    def out(self, text: str) -> TextOut:
        """The event for `text` going out now, with the logprobs that go with it."""
        if self.logprobs is None:
            return TextOut(self.request_id, text)
        self.released += len(text)
        held = self.held_logprobs
        n = 0
        while n < len(held) and held[n][0] < self.released:
            n += 1
        self.held_logprobs = held[n:]
        return TextOut(self.request_id, text, [entry for _, entry in held[:n]])


class Engine:
    def __init__(
        self,
        model_path: str,
        *,
        n_parallel: int,
        ctx_per_seq: int,
        n_threads: int = 0,
        n_batch: int = 512,
        flash_attention: bool | None = None,
        adapters: Sequence[str] = (),  # LoRA GGUF paths, applied at scale 1
        prefill_slice_ms: float = DEFAULT_PREFILL_SLICE_MS,  # 0: prompts fill the batch (llama.cpp's way)
        cache_ram_mib: int = DEFAULT_CACHE_RAM_MIB,  # host memory for cells sequences gave up; 0: none
    ) -> None:
        if n_parallel < 1 or ctx_per_seq < 1 or n_batch < 1:
            raise ValueError("n_parallel, ctx_per_seq and n_batch must be positive")
        self._closed = False
        self._weights = LoadedWeights(model_path, adapters=adapters)
        self._ctx: Any = None
        self._batch: Any = None
        try:
            train = self._weights.n_ctx_train
            self._ctx_per_seq = min(ctx_per_seq, train) if train > 0 else ctx_per_seq
            self._n_parallel = n_parallel
            # Every generating sequence needs its one token in each batch.
            self._n_batch = max(n_batch, n_parallel)
            params = context_params(n_ctx=self._ctx_per_seq * n_parallel, n_batch=self._n_batch,
                                    n_seq_max=n_parallel, n_threads=n_threads, flash_attention=flash_attention)
            params.kv_unified = False  # each sequence keeps its own ctx_per_seq cells
            self._ctx = lib.llama_init_from_model(self._weights.model, params)
            if not self._ctx:
                raise RuntimeError("llama.cpp could not create a context")
            self._weights.apply_adapters(self._ctx)
            self._mem: Any = lib.llama_get_memory(self._ctx)
            # Recurrent and some multimodal models cannot move cells: theirs end at the context.
            self._can_shift = bool(lib.llama_memory_can_shift(self._mem))
            self._batch = lib.llama_batch_init(self._n_batch, 0, 1)
        except BaseException:
            self.close()
            raise
        n = self._n_batch
        b = self._batch
        # Array views over the batch's C buffers: slice assignment fills a prompt chunk in
        # one call instead of one ctypes call per token.
        self._tok: Any = ctypes.cast(b.token, ctypes.POINTER(ctypes.c_int32 * n)).contents
        self._pos: Any = ctypes.cast(b.pos, ctypes.POINTER(ctypes.c_int32 * n)).contents
        self._out: Any = ctypes.cast(b.logits, ctypes.POINTER(ctypes.c_int8 * n)).contents
        n_seq_id = ctypes.cast(b.n_seq_id, ctypes.POINTER(ctypes.c_int32 * n)).contents
        n_seq_id[:] = [1] * n  # one sequence per token, always
        self._seq_rows: list[Any] = [b.seq_id[i] for i in range(n)]
        self._slots: list[_Seq | None] = [None] * n_parallel
        self._free: list[int] = list(range(n_parallel))
        # Cells a finished request leaves, for the next that starts the same way (a chat's
        # next turn, a shared system prompt); in host memory once their sequence is needed.
        self._cells = KeptCells(self._ctx, self._mem, n_parallel, cache_ram_mib=cache_ram_mib)
        self._by_id: dict[str, _Seq] = {}
        self._pending: list[EngineEvent] = []  # events raised by add(), returned by step()
        self._pacer = PrefillPacer(prefill_slice_ms)

    # -- introspection --------------------------------------------------------------------

    @property
    def n_parallel(self) -> int:
        return self._n_parallel

    @property
    def ctx_per_seq(self) -> int:
        return self._ctx_per_seq

    @property
    def weights(self) -> LoadedWeights:
        return self._weights

    @property
    def size_bytes(self) -> int:
        return self._weights.size_bytes

    @property
    def saved_prompt_bytes(self) -> int:
        """Host memory holding cells saved from sequences (read from any thread: one int)."""
        return self._cells.saved_bytes

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def active_ids(self) -> list[str]:
        return list(self._by_id)

    @property
    def has_work(self) -> bool:
        return bool(self._by_id or self._pending)

    # -- admission and cancellation --------------------------------------------------------

    def add(self, request_id: str, prompt: str, options: SamplingOptions, *, output: OutputFormat | None = None,
            logprobs: int | None = None, logit_bias: Mapping[int, float] | None = None, truncate: bool = True,
            shift: bool = True) -> None:
        """Admit a request; its events come from later `step()` calls. `output` constrains the
        text to a JSON schema; `logprobs` asks for each token's log probability with that many
        alternatives; `logit_bias` adds to the logits of token ids before sampling. `truncate`:
        a prompt too long for the context loses tokens after its first `num_keep`, else it
        fails (400); `shift`: a full context drops older cells and goes on, else it ends the
        answer with "length" (Ollama's flags and defaults)."""
        if self._closed:
            raise RuntimeError("the engine is closed")
        if request_id in self._by_id:
            raise ValueError(f"request {request_id!r} is already running")
        if not self._free:
            raise NoFreeSlot(f"all {self._n_parallel} sequences are busy")
        limit = min(options.num_ctx, self._ctx_per_seq) if options.num_ctx > 0 else self._ctx_per_seq
        tokens = self._weights.tokenize(prompt)
        if not tokens:
            self._pending.append(Failed(request_id, EMPTY, 400))
            return
        keep = kept_cells(options.num_keep, len(tokens), self._weights.add_bos, limit)
        if len(tokens) >= limit:  # no room left for even one generated token
            if not truncate or limit < 2:
                self._pending.append(Failed(request_id, TOO_LONG, 400))
                return
            new = truncated(tokens, keep, limit)
            log.warning("truncating input prompt: limit=%d prompt=%d keep=%d new=%d",
                        limit, len(tokens), keep, len(new))
            tokens = new
        n_vocab = self._weights.n_vocab
        bad = next((t for t in (logit_bias or {}) if not 0 <= t < n_vocab), None)
        if bad is not None:
            self._pending.append(Failed(request_id, f"logit_bias: token id {bad} is not in the vocabulary "
                                                    f"(0..{n_vocab - 1})", 400))
            return
        try:
            grammar = None if output is None else gbnf(output)
            sampler = SequenceSampler(options, n_vocab, limit, vocab=self._weights.vocab, grammar=grammar,
                                      logit_bias=logit_bias)
        except (GrammarError, GrammarRejected) as exc:
            self._pending.append(Failed(request_id, f"invalid format: {exc}", 400))
            return
        sampler.prime(tokens)
        seq_id, reused = self._cells.take(self._free, tokens)
        self._free.remove(seq_id)
        top = None if logprobs is None else max(0, min(logprobs, MAX_TOP))
        seq = _Seq(request_id, seq_id, tokens, options, sampler, limit, top, keep=keep,
                   shift=shift and self._can_shift)
        seq.reused = seq.fed = seq.n_past = reused
        self._slots[seq_id] = seq
        self._by_id[request_id] = seq

    def cancel(self, request_id: str) -> None:
        """Drop a request now, without events; unknown ids are ignored."""
        seq = self._by_id.get(request_id)
        if seq is not None:
            self._release(seq)
        elif self._pending:
            self._pending = [e for e in self._pending if e.request_id != request_id]

    def _release(self, seq: _Seq, *, keep_cells: bool = True) -> None:
        """Free the sequence; its cells stay for a request with the same start unless they no
        longer hold its tokens in order (shifted) or a failed decode left them unknown."""
        sid = seq.seq_id
        if keep_cells and seq.cacheable:
            self._cells.keep(sid, seq.prompt[: seq.fed] + seq.decoded)
        else:
            self._cells.drop(sid)
        seq.sampler.free()
        del self._by_id[seq.request_id]
        self._slots[sid] = None
        self._free.append(sid)

    # -- the decode loop -------------------------------------------------------------------

    def step(self) -> list[EngineEvent]:
        """Run one `llama_decode` over every active sequence and return what happened."""
        events, self._pending = self._pending, []
        if not self._by_id:
            return events
        active = [s for s in self._slots if s is not None]
        generating = [s for s in active if s.next_token >= 0]
        plan = [(s, 1) for s in generating]
        budget = self._pacer.prompt_budget(len(generating), self._n_batch - len(plan))
        plan += self._prompt_chunks([s for s in active if s.next_token < 0], budget)
        cap = sum(n for _, n in plan)
        while True:
            used = self._fill(plan, cap)
            start_of_decode = time.perf_counter_ns()
            ret = lib.llama_decode(self._ctx, self._batch)
            if ret == 0:
                break
            if ret == 1 and cap > 1:  # no KV slot for the whole batch: try a smaller one
                cap //= 2
                continue
            for seq, _, _ in used:
                events.append(Failed(seq.request_id, f"llama_decode failed ({ret})"))
                self._release(seq, keep_cells=False)
            return events
        end_of_decode = time.perf_counter_ns()
        chunks = [n for seq, n, _ in used if seq.next_token < 0]
        self._pacer.observe(len(used) - len(chunks), sum(chunks), (end_of_decode - start_of_decode) / 1e6)
        ctx = self._ctx
        for seq, n, row in used:
            if seq.next_token >= 0:
                seq.n_past += 1
                seq.decoded.append(seq.next_token)
            else:
                seq.fed += n
                seq.n_past += n
                if row < 0:
                    continue  # more prompt to go
                seq.t_prefilled = end_of_decode
            try:
                token = seq.sampler.sample(ctx, row)
            except GrammarDeadEnd as exc:
                events.append(Failed(seq.request_id, str(exc), 500))
                self._release(seq)
                continue
            if seq.t_first == 0:
                seq.t_first = time.perf_counter_ns()
            if seq.logprobs is not None and not self._weights.is_eog(token):
                entry = logprob_entry(ctx, row, self._weights.n_vocab, token, seq.logprobs,
                                      self._weights.token_piece)
                seq.held_logprobs.append((seq.stream.decoded, entry))
            self._advance(seq, token, events)
        return events

    def _prompt_chunks(self, prefilling: list[_Seq], budget: int) -> list[tuple[_Seq, int]]:
        """Share the batch room left among prompts, max-min fair: short prompts finish in
        one step rather than waiting behind a long one; what they leave goes to the rest.
        When the room is short, it goes to as many prompts as get MIN_CHUNK each, shortest first."""
        if not prefilling or budget <= 0:
            return []
        share: dict[int, int] = {}
        left = budget
        by_need = sorted(prefilling, key=lambda s: len(s.prompt) - s.fed)
        if sum(len(s.prompt) - s.fed for s in by_need) > budget:  # shares under MIN_CHUNK feed slowly
            by_need = by_need[: max(1, budget // MIN_CHUNK)]
        for i, seq in enumerate(by_need):
            fair = -(-left // (len(by_need) - i))  # ceil: progress even when room < prompts
            take = min(len(seq.prompt) - seq.fed, fair, left)
            share[seq.seq_id] = take
            left -= take
        return [(s, share[s.seq_id]) for s in prefilling if share.get(s.seq_id, 0) > 0]

    def _fill(self, plan: list[tuple[_Seq, int]], cap: int) -> list[tuple[_Seq, int, int]]:
        """Write up to `cap` tokens of the plan into the batch; return (seq, n, logits row),
        row -1 when that sequence gets no logits this step."""
        used: list[tuple[_Seq, int, int]] = []
        tok, pos, out, rows = self._tok, self._pos, self._out, self._seq_rows
        i = 0
        for seq, want in plan:
            n = min(want, cap - i)
            if n <= 0:
                break
            sid = seq.seq_id
            if seq.next_token >= 0:
                tok[i] = seq.next_token
                pos[i] = seq.n_past
                out[i] = 1
                rows[i][0] = sid
                used.append((seq, 1, i))
            else:
                start = seq.fed
                tok[i : i + n] = seq.prompt[start : start + n]
                pos[i : i + n] = range(start, start + n)
                out[i : i + n] = bytes(n)
                for r in rows[i : i + n]:
                    r[0] = sid
                last = i + n - 1
                done = start + n == len(seq.prompt)
                if done:  # logits only for the prompt's final token
                    out[last] = 1
                used.append((seq, n, last if done else -1))
            i += n
        self._batch.n_tokens = i
        return used

    def _advance(self, seq: _Seq, token: int, events: list[EngineEvent]) -> None:
        """Handle one sampled token: emit its text, or finish the sequence."""
        weights = self._weights
        if weights.is_eog(token):
            self._finish(seq, "stop", events)
            return
        seq.generated += 1
        text, stopped = seq.stream.feed(weights.token_piece(token))
        if text:
            events.append(seq.out(text))
        if stopped:
            self._finish(seq, "stop", events)
        elif seq.num_predict <= seq.generated:
            self._finish(seq, "length", events)
        elif seq.n_past >= seq.limit and not (seq.shift and self._shift_context(seq)):
            self._finish(seq, "length", events)  # `token` has no cell to go in
        else:
            seq.next_token = token

    def _shift_context(self, seq: _Seq) -> bool:
        """Make room in a full sequence: drop half of the cells after its first `keep` and
        move the rest back over them (Ollama's runner and llama.cpp's server both discard
        half). Only this sequence's cells move; llama.cpp re-rotates the moved keys (RoPE)
        at the next decode. False if the cells could not be removed."""
        keep = seq.keep
        discard = (seq.n_past - keep) // 2
        if not lib.llama_memory_seq_rm(self._mem, seq.seq_id, keep, keep + discard):
            return False
        lib.llama_memory_seq_add(self._mem, seq.seq_id, keep + discard, -1, -discard)
        seq.n_past -= discard
        seq.cacheable = False
        return True

    def _finish(self, seq: _Seq, reason: Literal["stop", "length"], events: list[EngineEvent]) -> None:
        rest = seq.stream.flush()
        if rest:
            events.append(seq.out(rest))
        now = time.perf_counter_ns()
        events.append(
            Finished(
                request_id=seq.request_id,
                done_reason=reason,
                prompt_eval_count=len(seq.prompt),
                prompt_cached_count=seq.reused,
                prompt_eval_duration_ns=seq.t_prefilled - seq.t_admit,
                eval_count=seq.generated,
                eval_duration_ns=now - seq.t_first,
            )
        )
        self._release(seq)

    # -- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Free samplers, batch, context and weights; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for seq in list(getattr(self, "_by_id", {}).values()):
            seq.sampler.free()
        self._by_id = {}
        self._pending = []
        if hasattr(self, "_cells"):
            self._cells.clear()
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
        self._weights.free()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kept_cells(num_keep: int, n_prompt: int, add_bos: bool, limit: int) -> int:
    """The leading cells truncation and shifting never drop: `num_keep` prompt tokens (-1: the
    whole prompt) after the BOS the tokenizer adds, as Ollama's llama.cpp runner counts them;
    at most `limit - 2`, so a truncated prompt keeps one token of its end and leaves a cell to
    generate into, and a shift always frees at least one cell."""
    keep = n_prompt if num_keep < 0 else num_keep + int(add_bos)
    return max(0, min(keep, limit - 2))


def truncated(tokens: list[int], keep: int, limit: int) -> list[int]:
    """A prompt of `limit` or more tokens cut to its first `keep` tokens and its newest
    `(limit - keep) // 2`: half of the room after `keep` goes to the prompt, half to the answer.
    Ollama cuts the prompt to exactly `limit` tokens and its first generated token then shifts
    half of what follows `keep` away; cutting that half up front keeps the same tokens without
    decoding ones only to drop them, and with `shift: false` leaves room to answer rather than
    none. (llama.cpp's server likewise keeps n_keep and about half of the rest.)"""
    tail = max(1, (limit - keep) // 2)
    return tokens[:keep] + tokens[len(tokens) - tail :]
