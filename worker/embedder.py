"""Embeddings from a loaded model, on a second llama.cpp context over the engine's weights.

The context has embeddings on and pools each sequence the way the GGUF says (mean when it
says nothing, as a causal LM does not). Every input of an embed job is one sequence; each
`step()` puts up to `n_batch` tokens of the waiting inputs, several sequences together,
through one `llama_decode` and reads each sequence's pooled vector with
`llama_get_embeddings_seq`. An input longer than what is left of the batch continues in the
next step (its earlier tokens stay in the KV cache, so attention sees the whole input) and
its pooled pieces are combined, weighted by their tokens. So one step is never more work
than one batch, and the engine's thread can run these steps between its decode steps.
A sequence's KV cells are removed as soon as its vector is read.

Like the engine, every method must be called from one thread.
"""

from __future__ import annotations

import collections
import ctypes
import time
from collections.abc import Sequence

import msgspec

from worker.engine import EMPTY, TOO_LONG, Failed
from worker.llama_model import LoadedWeights, context_params, lib

_POOLINGS = {lib.LLAMA_POOLING_TYPE_MEAN, lib.LLAMA_POOLING_TYPE_CLS, lib.LLAMA_POOLING_TYPE_LAST}


class Embedded(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    vectors: list[list[float]]  # one per input, in order, as pooled (not normalized)
    prompt_eval_count: int
    prompt_eval_duration_ns: int


EmbedEvent = Embedded | Failed


class _Job:
    __slots__ = ("dimensions", "left", "prompt_tokens", "request_id", "t_admit", "vectors")

    def __init__(self, request_id: str, n_inputs: int, prompt_tokens: int, dimensions: int | None) -> None:
        self.request_id = request_id
        self.vectors: list[list[float]] = [[] for _ in range(n_inputs)]
        self.left = n_inputs
        self.prompt_tokens = prompt_tokens
        self.dimensions = dimensions
        self.t_admit = time.perf_counter_ns()


class _Input:
    """One input of a job: a sequence of the context while it is decoded."""

    __slots__ = ("fed", "index", "job", "pooled", "seq_id", "tokens")

    def __init__(self, job: _Job, index: int, tokens: list[int]) -> None:
        self.job = job
        self.index = index
        self.tokens = tokens
        self.fed = 0  # tokens decoded so far
        self.seq_id = -1  # while it waits for a sequence
        self.pooled: list[float] = []  # the vector so far (mean pooling: the weighted sum)


def gguf_pooling(weights: LoadedWeights) -> int:
    """The pooling the GGUF declares (`{arch}.pooling_type`), or mean when it declares none."""
    buf = ctypes.create_string_buffer(128)

    def meta(key: str) -> str | None:
        n = lib.llama_model_meta_val_str(weights.model, key.encode(), buf, len(buf))
        return buf.value.decode() if n >= 0 else None

    declared = meta(f"{meta('general.architecture')}.pooling_type")
    pooling = int(declared) if declared and declared.isdigit() else lib.LLAMA_POOLING_TYPE_NONE
    return pooling if pooling in _POOLINGS else lib.LLAMA_POOLING_TYPE_MEAN


class Embedder:
    def __init__(
        self,
        weights: LoadedWeights,
        *,
        ctx_len: int,
        n_threads: int = 0,
        flash_attention: bool | None = None,
        n_batch: int = 512,
        n_seq_max: int = 16,
    ) -> None:
        """`ctx_len` is the longest input (longer ones are cut or refused); the KV cache holds
        that many tokens, shared by the inputs being decoded."""
        self._weights = weights
        self._ctx_len = ctx_len
        self._n_batch = min(n_batch, ctx_len)
        self._pooling = gguf_pooling(weights)
        self._n_embd: int = lib.llama_model_n_embd_out(weights.model)
        n_seq_max = min(n_seq_max, self._n_batch, lib.llama_max_parallel_sequences())  # outputs <= n_batch
        # One ubatch per decode (context_params): a sequence's pooled vector is over one ubatch.
        params = context_params(n_ctx=ctx_len, n_batch=self._n_batch, n_seq_max=n_seq_max, n_threads=n_threads,
                                flash_attention=flash_attention)
        params.kv_unified = True  # the inputs share the cells: short ones take few
        params.embeddings = True
        params.pooling_type = self._pooling
        self._ctx = lib.llama_init_from_model(weights.model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create an embedding context")
        weights.apply_adapters(self._ctx)  # embeddings of a model with a LoRA come from the adapted weights
        self._mem = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(self._n_batch, 0, 1)
        self._free = list(range(n_seq_max))
        self._waiting: collections.deque[_Input] = collections.deque()
        self._decoding: list[_Input] = []  # in the order they were admitted
        self._held = 0  # KV cells the decoding inputs will fill
        self._jobs: dict[str, _Job] = {}
        self._pending: list[EmbedEvent] = []  # failures found by add(), returned by step()

    @property
    def has_work(self) -> bool:
        return bool(self._jobs or self._pending)

    @property
    def active_ids(self) -> list[str]:
        return list(self._jobs)

    def add(self, request_id: str, inputs: Sequence[str | list[int]], *, truncate: bool = True, num_ctx: int = 0,
            dimensions: int | None = None) -> None:
        """Queue a job's inputs (texts, or token ids); its event comes from a later `step()`."""
        if request_id in self._jobs:
            raise ValueError(f"request {request_id!r} is already running")
        limit = min(num_ctx, self._ctx_len) if num_ctx > 0 else self._ctx_len
        token_lists: list[list[int]] = []
        for value in inputs:
            tokens = self._weights.tokenize(value) if isinstance(value, str) else list(value)
            error = self._check(tokens, limit, truncate)
            if error:
                self._pending.append(Failed(request_id, error, 400))
                return
            token_lists.append(tokens[:limit])
        job = _Job(request_id, len(token_lists), sum(map(len, token_lists)), dimensions)
        if not token_lists:
            self._pending.append(self._embedded(job))
            return
        self._jobs[request_id] = job
        self._waiting.extend(_Input(job, i, tokens) for i, tokens in enumerate(token_lists))

    def _check(self, tokens: list[int], limit: int, truncate: bool) -> str | None:
        if not tokens:
            return EMPTY
        bad = next((t for t in tokens if not 0 <= t < self._weights.n_vocab), None)
        if bad is not None:
            return f"token id {bad} is not in the model's vocabulary (0 to {self._weights.n_vocab - 1})"
        if len(tokens) > limit and not truncate:
            return TOO_LONG
        return None

    def cancel(self, request_id: str) -> None:
        """Drop a job now, without events; unknown ids are ignored."""
        if self._jobs.pop(request_id, None) is None:
            self._pending = [e for e in self._pending if e.request_id != request_id]
            return
        self._waiting = collections.deque(i for i in self._waiting if i.job.request_id != request_id)
        for inp in [i for i in self._decoding if i.job.request_id == request_id]:
            self._release(inp)

    def _release(self, inp: _Input) -> None:
        lib.llama_memory_seq_rm(self._mem, inp.seq_id, -1, -1)
        self._decoding.remove(inp)
        self._held -= len(inp.tokens)
        self._free.append(inp.seq_id)

    def _admit(self) -> None:
        """Give waiting inputs a sequence while there are sequences and KV cells for them."""
        while self._waiting and self._free and self._held + len(self._waiting[0].tokens) <= self._ctx_len:
            inp = self._waiting.popleft()
            inp.seq_id = self._free.pop()
            self._held += len(inp.tokens)
            self._decoding.append(inp)

    def step(self) -> list[EmbedEvent]:
        """Decode up to one batch of the waiting inputs' tokens; return the jobs that ended."""
        ended = self._decode()
        events, self._pending = [*self._pending, *ended], []
        return events

    def _decode(self) -> list[EmbedEvent]:
        events: list[EmbedEvent] = []
        self._admit()
        plan = self._fill()
        if not plan:
            return events
        ret = lib.llama_decode(self._ctx, self._batch)
        if ret != 0:
            for request_id in {inp.job.request_id for inp, _ in plan}:
                events.append(Failed(request_id, f"llama_decode failed ({ret})"))
                self.cancel(request_id)
            return events
        pieces = [self._piece(inp) for inp, _ in plan]  # all read before any job changes
        for (inp, n), piece in zip(plan, pieces, strict=True):
            self._pool(inp, piece, n)
            if inp.fed < len(inp.tokens):
                continue
            job = inp.job
            self._release(inp)
            vector = inp.pooled
            if self._pooling == lib.LLAMA_POOLING_TYPE_MEAN:
                vector = [x / len(inp.tokens) for x in vector]
            job.vectors[inp.index] = vector[: job.dimensions] if job.dimensions else vector
            job.left -= 1
            if job.left == 0:
                del self._jobs[job.request_id]
                events.append(self._embedded(job))
        return events

    def _fill(self) -> list[tuple[_Input, int]]:
        """Write the next tokens of the decoding inputs, oldest first, into the batch."""
        b = self._batch
        plan: list[tuple[_Input, int]] = []
        i = 0
        for inp in self._decoding:
            n = min(len(inp.tokens) - inp.fed, self._n_batch - i)
            if n <= 0:
                break
            for k in range(n):
                b.token[i + k] = inp.tokens[inp.fed + k]
                b.pos[i + k] = inp.fed + k
                b.n_seq_id[i + k] = 1
                b.seq_id[i + k][0] = inp.seq_id
                b.logits[i + k] = 1  # pooling needs every token's output
            plan.append((inp, n))
            i += n
        b.n_tokens = i
        return plan

    def _piece(self, inp: _Input) -> list[float]:
        """The input's vector pooled over its tokens in the last decode."""
        ptr = lib.llama_get_embeddings_seq(self._ctx, inp.seq_id)
        if not ptr:
            raise RuntimeError("llama.cpp returned no embedding for a sequence")
        piece: list[float] = ptr[: self._n_embd]
        return piece

    def _pool(self, inp: _Input, piece: list[float], n: int) -> None:
        """Fold the vector pooled over `n` more of the input's tokens into its vector."""
        if self._pooling == lib.LLAMA_POOLING_TYPE_MEAN:
            # The piece is the mean over these n tokens: keep the sum, divide at the end.
            inp.pooled = [a + b * n for a, b in zip(inp.pooled or [0.0] * len(piece), piece, strict=True)]
        elif self._pooling == lib.LLAMA_POOLING_TYPE_LAST or not inp.pooled:  # CLS: the first piece's
            inp.pooled = piece
        inp.fed += n

    def _embedded(self, job: _Job) -> Embedded:
        return Embedded(request_id=job.request_id, vectors=job.vectors, prompt_eval_count=job.prompt_tokens,
                        prompt_eval_duration_ns=time.perf_counter_ns() - job.t_admit)

    def close(self) -> None:
        """Free the context and batch (not the weights: the engine owns them); safe twice."""
        self._jobs.clear()
        self._waiting.clear()
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
