"""Reference log-probabilities, computed once per (reference file, text, context) and cached on disk,
so comparing several quantized files against one reference costs one reference pass.

Storage per scored token (why this shape):
- a dense uint16 row over the whole vocabulary: log-probs quantized linearly over the 16-nat window
  below the top one, plus (scale, minimum) as float32. This is exactly llama.cpp's own
  ``--kl-divergence-base`` encoding (perplexity.cpp ``log_softmax(..., uint16_t*)``): 2 bytes per vocab
  entry instead of 4 (float32) and with a uniform error <= 1.2e-4 nat, where float16 would lose up to
  4e-3 nat at log-prob -10. Everything below the window is at or below -16, which the KL sum ignores anyway.
- the 32 most likely tokens exactly (int32 id + float32 log-prob): they carry most of the probability
  mass, so the KL-divergence error from the uint16 rounding becomes negligible (a model against itself
  gives ~1e-7, not ~1e-5), and the argmax is exact, so top-1 agreement of a model with itself is 1.0.
- the target's NLL (float64) and the reference's argmax (int32).
For SmolLM2 (49152 tokens) that is 98 KiB per scored token (~200 MiB for 2 040 scored tokens).
The arrays are ``.npy`` files in a folder named by the cache key, written under a temporary name and
renamed when complete (a cancelled pass leaves nothing); only the newest MAX_CACHED_REFERENCES are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from quantpress.core.signals import EVAL_REFERENCE_TMP, remove_stale

CACHE_FORMAT = 1
MAX_CACHED_REFERENCES = 8  # oldest passes beyond this are deleted (each is ~100-500 MiB)
TOP_K = 32
WINDOW_NATS = 16.0
LEVELS = 65535


def file_fingerprint(path: Path) -> dict[str, object]:
    """Size, mtime and a hash of the first MiB: cheap, and changes whenever the file is rewritten.
    For a model folder: the same for its config.json and every weight file."""
    if path.is_dir():
        files = [path / "config.json", *sorted(path.glob("*.safetensors"))]
        return {"name": path.name, "files": [file_fingerprint(f) for f in files if f.is_file()]}
    st = path.stat()
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": head}


def cache_key(reference: Path, text_sha256: str, ctx_tokens: int, n_chunks: int, kv_type: str) -> str:
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "reference": file_fingerprint(reference),
            "text": text_sha256,
            "ctx": ctx_tokens,
            "chunks": n_chunks,
            "kv": kv_type,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    from quantpress.core.paths import eval_reference_dir

    return eval_reference_dir()


@dataclass
class ReferenceLogits:
    """The cached reference pass (arrays may be memory-mapped)."""

    tokens: np.ndarray  # int32 [n_chunks * ctx]: the evaluated text tokens (reference tokenizer)
    nll: np.ndarray  # float64 [n_scored]
    top1: np.ndarray  # int32 [n_scored]
    topk_ids: np.ndarray  # int32 [n_scored, TOP_K]
    topk_lp: np.ndarray  # float32 [n_scored, TOP_K]
    dense: np.ndarray  # uint16 [n_scored, n_vocab]
    dense_scale_min: np.ndarray  # float32 [n_scored, 2]
    n_vocab: int

    def log_probs(self, rows: slice) -> np.ndarray:
        """Reference log-probs (float64 [n, vocab]) for scored tokens ``rows``: dense rows decoded,
        top-k entries exact."""
        sm = self.dense_scale_min[rows].astype(np.float64)
        lp = self.dense[rows].astype(np.float64) * sm[:, :1] + sm[:, 1:]
        # Entries below the window decode to its floor, as in llama.cpp: that floor is <= -16 (cut off
        # from the KL sum) unless the whole row fits in the window, where 0 is the row's true minimum.
        np.put_along_axis(lp, self.topk_ids[rows], self.topk_lp[rows].astype(np.float64), axis=1)
        return lp


def encode_rows(log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float64 log-probs [n, vocab] -> (dense uint16, scale/min float32 [n,2], top-k ids, top-k log-probs)."""
    top = log_probs.max(axis=1, keepdims=True)
    low = np.maximum(log_probs.min(axis=1, keepdims=True), top - WINDOW_NATS)
    scale = (top - low) / LEVELS
    safe = np.where(scale > 0, scale, 1.0)
    q = np.where(log_probs > low, np.rint((log_probs - low) / safe), 0.0)
    dense = np.clip(q, 0, LEVELS).astype(np.uint16)
    scale_min = np.concatenate([scale, low], axis=1).astype(np.float32)
    ids = np.argpartition(-log_probs, TOP_K, axis=1)[:, :TOP_K].astype(np.int32)
    return dense, scale_min, ids, np.take_along_axis(log_probs, ids, axis=1).astype(np.float32)


class ReferenceWriter:
    """Fill the arrays chunk by chunk in a temporary folder; ``commit()`` renames it into place."""

    def __init__(self, cache_dir: Path, key: str, tokens: np.ndarray, n_scored: int, n_vocab: int) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.final = cache_dir / key
        remove_stale(cache_dir, EVAL_REFERENCE_TMP)  # what killed evaluations left behind
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.", dir=cache_dir))
        np.save(self.tmp / "tokens.npy", tokens.astype(np.int32))
        mm = np.lib.format.open_memmap
        self.dense = mm(self.tmp / "dense.npy", mode="w+", dtype=np.uint16, shape=(n_scored, n_vocab))
        self.scale_min = np.zeros((n_scored, 2), np.float32)
        self.topk_ids = np.zeros((n_scored, TOP_K), np.int32)
        self.topk_lp = np.zeros((n_scored, TOP_K), np.float32)
        self.nll = np.zeros(n_scored, np.float64)
        self.top1 = np.zeros(n_scored, np.int32)
        self.n_vocab = n_vocab

    def add(self, start: int, log_probs: np.ndarray, nll: np.ndarray) -> None:
        end = start + len(log_probs)
        dense, sm, ids, lp = encode_rows(log_probs)
        self.dense[start:end], self.scale_min[start:end] = dense, sm
        self.topk_ids[start:end], self.topk_lp[start:end] = ids, lp
        self.nll[start:end] = nll
        self.top1[start:end] = log_probs.argmax(axis=1)

    def commit(self) -> Path:
        self.dense.flush()
        del self.dense
        for name in ("scale_min", "topk_ids", "topk_lp", "nll", "top1"):
            np.save(self.tmp / f"{name}.npy", getattr(self, name))
        (self.tmp / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, "n_vocab": self.n_vocab}))
        if self.final.exists():  # another run finished first: keep theirs
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.rename(self.final)
        prune(self.final.parent, keep=self.final)
        return self.final

    def abort(self) -> None:
        if hasattr(self, "dense"):
            del self.dense
        shutil.rmtree(self.tmp, ignore_errors=True)


def prune(cache_dir: Path, keep: Path, limit: int = MAX_CACHED_REFERENCES) -> None:
    """Delete the least recently written reference passes beyond ``limit`` (never ``keep``)."""
    done = [p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    done.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in done[limit:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def load_reference(folder: Path) -> ReferenceLogits | None:
    """The cached pass in ``folder``, or None if missing or unreadable (then it is recomputed)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None

        def load(name: str) -> np.ndarray:
            array: np.ndarray = np.load(folder / f"{name}.npy", mmap_mode="r")
            return array

        return ReferenceLogits(
            tokens=np.asarray(load("tokens")),
            nll=np.asarray(load("nll")),
            top1=np.asarray(load("top1")),
            topk_ids=np.asarray(load("topk_ids")),
            topk_lp=np.asarray(load("topk_lp")),
            dense=load("dense"),
            dense_scale_min=np.asarray(load("scale_min")),
            n_vocab=int(meta["n_vocab"]),
        )
    except (OSError, ValueError, KeyError):
        return None
