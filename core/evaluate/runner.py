"""Run a GGUF over the evaluation chunks and hand back next-token logits, as llama.cpp's
perplexity tool does it (tools/perplexity/perplexity.cpp, ``perplexity()`` and ``kl_divergence()``):

- the text is tokenized once, with the model's special tokens (BOS when the vocab adds one);
- it is cut into chunks of ``n_ctx`` tokens; each chunk starts with an empty KV cache and, when the
  vocab adds BOS, its first token is replaced by BOS;
- only the second half is scored: the logits at positions ``first = n_ctx // 2`` .. ``n_ctx - 2``
  predict tokens ``first + 1`` .. ``n_ctx - 1``, i.e. ``n_ctx - 1 - first`` tokens per chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from quantpress.core.chat.llama_loader import GgufShape, open_llama
from quantpress.core.chat.types import KVCacheType
from quantpress.core.errors import InvalidInput, ModelLoadError


def scored_per_chunk(ctx_tokens: int) -> int:
    return ctx_tokens - 1 - ctx_tokens // 2


def chunk_inputs(tokens: np.ndarray, ctx_tokens: int, n_chunks: int,
                 bos: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """llama.cpp's perplexity chunking, shared by every runner: consecutive chunks of ``ctx_tokens``,
    each run in a fresh context with its first token replaced by ``bos`` (when the vocabulary adds one);
    the targets are the tokens after the first half, the part that is scored. Yields (int32 tokens to
    run, int32 targets)."""
    first = ctx_tokens // 2
    for c in range(n_chunks):
        chunk = np.array(tokens[c * ctx_tokens : (c + 1) * ctx_tokens], dtype=np.int32)
        targets = chunk[first + 1 :].copy()
        if bos is not None:
            chunk[0] = bos
        yield chunk, targets


class Runner(Protocol):
    """What the evaluator needs from a loaded model (llama.cpp for GGUF files, torch for folders)."""

    ctx_tokens: int
    n_vocab: int
    flash_attn: bool

    def tokenize(self, text: str) -> np.ndarray: ...

    def chunks(self, tokens: np.ndarray, n_chunks: int) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def close(self) -> None: ...


def open_runner(path: Path, ctx_tokens: int, kv_type: KVCacheType = KVCacheType.F16, threads: int | None = None,
                flash_attn: bool | None = None) -> Runner:
    """The runner for ``path``: llama.cpp for a .gguf file, torch for an AWQ output folder (int4 kernels)
    or a plain Hugging Face folder (float32, e.g. the original an AWQ output is compared with)."""
    if path.is_dir():
        from quantpress.core.evaluate.torch_runner import TorchChunkRunner

        runner: Runner = TorchChunkRunner(path, ctx_tokens, kv_type, threads, flash_attn)
        return runner
    return ChunkRunner(path, ctx_tokens, kv_type, threads, flash_attn)


def vocab_size(path: Path) -> int:
    """Vocabulary size from the metadata (GGUF header or config.json); no weights are read."""
    if path.is_dir():
        from quantpress.core.evaluate.torch_runner import folder_vocab_size

        return int(folder_vocab_size(path))
    from quantpress.core.chat.llama_loader import read_gguf_shape

    return int(read_gguf_shape(path).n_vocab)


def model_bytes(path: Path) -> int:
    """Size on disk: the file, or a folder's weight files."""
    if path.is_dir():
        from quantpress.core.evaluate.torch_runner import folder_bytes

        return int(folder_bytes(path))
    return path.stat().st_size


class ChunkRunner:
    """One model loaded for evaluation: a context of exactly ``ctx_tokens``, one chunk per decode."""

    def __init__(
        self,
        path: Path,
        ctx_tokens: int,
        kv_type: KVCacheType = KVCacheType.F16,
        threads: int | None = None,
        flash_attn: bool | None = None,
    ) -> None:
        self.ctx_tokens = ctx_tokens
        self._llm, self.shape, _ = open_llama(
            path, ctx_tokens=ctx_tokens, kv_type_k=kv_type, kv_type_v=kv_type, threads=threads, n_batch=ctx_tokens,
            flash_attn=flash_attn,
        )
        import llama_cpp

        self.flash_attn = bool(self._llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED)
        self.n_vocab = int(self._llm.n_vocab())

    @property
    def gguf(self) -> GgufShape:
        return self.shape

    def add_bos(self) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_get_add_bos(self._llm._model.vocab))

    def tokenize(self, text: str) -> np.ndarray:
        """``common_tokenize(ctx, text, add_special=true)``: BOS if the vocab wants it, text not parsed for specials."""
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=self.add_bos(), special=False)
        return np.asarray(tokens, dtype=np.int32)

    def chunks(self, tokens: np.ndarray, n_chunks: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """For each chunk: (float32 logits [n_scored, n_vocab], int32 target tokens [n_scored])."""
        first = self.ctx_tokens // 2
        bos = self._llm.token_bos() if self.add_bos() else None
        for chunk, targets in chunk_inputs(tokens, self.ctx_tokens, n_chunks, bos):
            logits = self._decode(chunk, first)
            yield logits[: self.ctx_tokens - 1 - first], targets

    def _decode(self, chunk: np.ndarray, first: int) -> np.ndarray:
        import llama_cpp

        ctx = self._llm.ctx
        n = len(chunk)
        batch = llama_cpp.llama_batch_init(n, 0, 1)
        try:
            batch.n_tokens = n
            for i, tok in enumerate(chunk.tolist()):
                batch.token[i] = tok
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i >= first
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise ModelLoadError(f"{self.shape.path.name}: llama.cpp failed to evaluate a chunk (code {rc})")
            ptr: Any = llama_cpp.llama_get_logits(ctx)
            return np.ctypeslib.as_array(ptr, shape=(n - first, self.n_vocab)).copy()
        finally:
            llama_cpp.llama_batch_free(batch)

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()


def count_chunks(n_text_tokens: int, ctx_tokens: int, max_tokens: int | None) -> int:
    """Chunks to evaluate; llama.cpp's perplexity tool wants at least two (2 * n_ctx tokens)."""
    usable = n_text_tokens if max_tokens is None else min(n_text_tokens, max_tokens)
    if ctx_tokens < 16:
        raise InvalidInput(f"A context of {ctx_tokens} tokens is too small to evaluate; use at least 16.")
    if usable < 2 * ctx_tokens:
        what = "The text" if max_tokens is None or max_tokens >= n_text_tokens else "The --tokens limit"
        raise InvalidInput(
            f"{what} gives {usable} tokens, but evaluating with a context of {ctx_tokens} needs at least "
            f"{2 * ctx_tokens} (two chunks, as llama.cpp's perplexity tool). Use a longer text or a smaller context."
        )
    return usable // ctx_tokens
