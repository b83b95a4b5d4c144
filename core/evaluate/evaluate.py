"""``evaluate()``: perplexity of a GGUF on a text and, against a reference GGUF, mean/99th-percentile
KL-divergence, top-1 agreement and Δ perplexity (definitions: metrics.py, chunking: runner.py)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from quantpress.core.chat.types import KVCacheType
from quantpress.core.errors import InvalidInput
from quantpress.core.evaluate import metrics
from quantpress.core.evaluate.reference import (
    ReferenceLogits,
    ReferenceWriter,
    cache_key,
    default_cache_dir,
    load_reference,
)
from quantpress.core.evaluate.runner import (
    Runner,
    count_chunks,
    model_bytes,
    open_runner,
    scored_per_chunk,
    vocab_size,
)
from quantpress.core.evaluate.sidecar import merge_evaluation, read_sidecar
from quantpress.core.evaluate.text import EvalText, default_eval_text
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, Throttle, ignore
from quantpress.core.validate import non_finite_output

DEFAULT_CTX_TOKENS = 512  # llama.cpp's KLD scoreboards use 512
DEFAULT_MAX_TOKENS = 4096  # 8 chunks of 512: ~2 000 scored tokens


@dataclass(frozen=True)
class EvalResult:
    """One evaluation. Reference fields are None without a reference."""

    model: Path
    model_bytes: int
    text_name: str
    text_sha256: str
    ctx_tokens: int
    chunks: int
    tokens: int  # scored tokens
    kv_type: str
    flash_attn: bool
    perplexity: float
    reference: Path | None = None
    reference_kv_type: str | None = None
    reference_flash_attn: bool | None = None
    reference_perplexity: float | None = None
    delta_perplexity: float | None = None
    kld_mean: float | None = None
    kld_p99: float | None = None
    top1_agreement: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class _Numbers:
    perplexity: float
    tokens: int  # scored tokens
    reference_perplexity: float | None = None
    delta_perplexity: float | None = None
    kld_mean: float | None = None
    kld_p99: float | None = None
    top1_agreement: float | None = None


class _Stages:
    """Map per-pass progress onto one 0..1 bar (reference pass first, when it has to be computed)."""

    def __init__(self, report: Report, n_passes: int) -> None:
        self._report, self._n = Throttle(report), n_passes
        self._pass = 0

    def next_pass(self) -> None:
        self._pass += 1

    def __call__(self, label: str, done: int, total: int) -> None:
        fraction = (self._pass + done / total) / self._n
        self._report(Progress("evaluate", min(fraction, 1.0), f"{label}: chunk {done}/{total}", done, total))


def evaluate(
    model: str | Path,
    reference: str | Path | None = None,
    *,
    text: EvalText | None = None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    ctx_tokens: int = DEFAULT_CTX_TOKENS,
    kv_type: KVCacheType = KVCacheType.F16,
    reference_kv_type: KVCacheType = KVCacheType.F16,
    threads: int | None = None,
    flash_attn: bool | None = None,
    reference_flash_attn: bool | None = None,
    cache_dir: Path | None = None,
    save: bool = True,
    report: Report = ignore,
    cancel: CancelToken = NEVER,
) -> EvalResult:
    """Evaluate ``model`` on ``text`` (default: the shipped held-out text), optionally against
    ``reference`` (same vocabulary and tokenizer). Each is a GGUF (run by llama.cpp), an AWQ output
    folder (run by the AWQ int4 backend) or a plain Hugging Face folder (float32 torch, e.g. the
    original of an AWQ output). ``flash_attn`` / ``reference_flash_attn``
    (None: on only for a quantized V cache, which needs it) let a KV-cache comparison hold flash
    attention fixed. The result is also merged into the model's sidecar JSON unless ``save=False``."""
    started = time.monotonic()
    model, text = Path(model), text or default_eval_text()
    if not text.text.strip():
        raise InvalidInput(f"The evaluation text ({text.name}) is empty.")
    if save:
        read_sidecar(model)  # a damaged sidecar is refused now, not after the passes it would waste
    cache_dir = cache_dir or default_cache_dir()
    ref_path = Path(reference) if reference is not None else None
    ref: ReferenceLogits | None = None
    ref_fa = False
    stages = _Stages(report, 1)
    if ref_path is not None:
        _check_vocab_sizes(model, ref_path)  # before any pass: a mismatch is known from the metadata
        ref, ref_fa, stages = _reference(ref_path, text, max_tokens, ctx_tokens, reference_kv_type,
                                         reference_flash_attn, threads, cache_dir, report, cancel)
    runner = open_runner(model, ctx_tokens, kv_type, threads, flash_attn)
    try:
        if ref is None:
            tokens = runner.tokenize(text.text)
            n_chunks = count_chunks(len(tokens), ctx_tokens, max_tokens)
        else:
            tokens, n_chunks = _check_same_vocab(runner, ref, text, model, ref_path), len(ref.tokens) // ctx_tokens
        numbers = _score(runner, model, tokens, n_chunks, ref, stages, cancel)
    finally:
        runner.close()
    result = EvalResult(
        model=model,
        model_bytes=model_bytes(model),
        text_name=text.name,
        text_sha256=text.sha256,
        ctx_tokens=ctx_tokens,
        chunks=n_chunks,
        kv_type=kv_type.value,
        flash_attn=runner.flash_attn,
        reference=ref_path,
        reference_kv_type=reference_kv_type.value if ref_path else None,
        reference_flash_attn=ref_fa if ref_path else None,
        seconds=time.monotonic() - started,
        perplexity=numbers.perplexity,
        tokens=numbers.tokens,
        reference_perplexity=numbers.reference_perplexity,
        delta_perplexity=numbers.delta_perplexity,
        kld_mean=numbers.kld_mean,
        kld_p99=numbers.kld_p99,
        top1_agreement=numbers.top1_agreement,
    )
    message = "done"
    if save:
        try:
            merge_evaluation(model, result_key(result), _jsonable(result))
        except OSError as exc:  # e.g. a read-only folder: keep the numbers, say why they were not saved
            message = f"done (not saved next to the model: {exc.strerror or exc})"
    report(Progress("evaluate", 1.0, message))
    return result


def result_key(result: EvalResult) -> str:
    """Key of a result in the sidecar: one entry per reference/text/context/KV type."""
    ref = result.reference.name if result.reference else "none"
    fa = ";fa" if result.flash_attn else ""
    ref_fa = ";fa" if result.reference_flash_attn else ""
    return (
        f"ref={ref};ref_kv={result.reference_kv_type}{ref_fa};text={result.text_sha256[:12]};"
        f"ctx={result.ctx_tokens};kv={result.kv_type}{fa}"
    )


def _jsonable(result: EvalResult) -> dict[str, object]:
    d = asdict(result)
    d["model"] = str(result.model)
    d["reference"] = str(result.reference) if result.reference else None
    return d


def _reference(
    path: Path,
    text: EvalText,
    max_tokens: int | None,
    ctx_tokens: int,
    kv_type: KVCacheType,
    flash_attn: bool | None,
    threads: int | None,
    cache_dir: Path,
    report: Report,
    cancel: CancelToken,
) -> tuple[ReferenceLogits, bool, _Stages]:
    """Load the cached reference pass or compute it (then progress covers two passes)."""
    runner = open_runner(path, ctx_tokens, kv_type, threads, flash_attn)
    fa = runner.flash_attn
    try:
        tokens = runner.tokenize(text.text)
        n_chunks = count_chunks(len(tokens), ctx_tokens, max_tokens)
        kv_label = kv_type.value + (";fa" if fa else "")
        folder = cache_dir / cache_key(path, text.sha256, ctx_tokens, n_chunks, kv_label)
        cached = load_reference(folder)
        if cached is not None:
            return cached, fa, _Stages(report, 1)
        stages = _Stages(report, 2)
        tokens = tokens[: n_chunks * ctx_tokens]
        n_scored = n_chunks * scored_per_chunk(ctx_tokens)
        writer = ReferenceWriter(cache_dir, folder.name, tokens, n_scored, runner.n_vocab)
        try:
            row = 0
            for i, (logits, targets) in enumerate(runner.chunks(tokens, n_chunks)):
                cancel.raise_if_cancelled()
                _refuse_non_finite(logits, path)
                lp = metrics.log_softmax(logits)
                writer.add(row, lp, metrics.token_nll(lp, targets))
                row += len(targets)
                stages("reference", i + 1, n_chunks)
            cancel.raise_if_cancelled()
            final = writer.commit()
        except BaseException:
            writer.abort()
            raise
    finally:
        runner.close()
    stages.next_pass()
    loaded = load_reference(final)
    if loaded is None:
        raise InvalidInput(f"{final}: the reference cache just written cannot be read back (disk full?).")
    return loaded, fa, stages


def _refuse_non_finite(logits: np.ndarray, path: Path) -> None:
    """Perplexity of NaN logits is NaN: refuse instead of reporting it (convert refuses such weights too)."""
    if not np.isfinite(logits).all():
        raise non_finite_output(path.name)


def _check_vocab_sizes(model: Path, ref_path: Path) -> None:
    from quantpress.core.errors import InvalidModel, ModelLoadError

    try:
        n_model, n_ref = vocab_size(model), vocab_size(ref_path)
    except InvalidModel as exc:
        raise ModelLoadError(str(exc)) from None
    if n_model != n_ref:
        raise InvalidInput(
            f"{model.name} has a vocabulary of {n_model} tokens but the reference {ref_path.name} has "
            f"{n_ref}: KL-divergence needs the same vocabulary. Compare formats of the same model."
        )


def _check_same_vocab(runner: Runner, ref: ReferenceLogits, text: EvalText, model: Path, ref_path: Path | None) -> np.ndarray:
    """The reference's tokens are reused, so both models must share the tokenizer."""
    name = ref_path.name if ref_path else "reference"
    if runner.n_vocab != ref.n_vocab:
        raise InvalidInput(
            f"{model.name} has a vocabulary of {runner.n_vocab} tokens but the reference {name} has "
            f"{ref.n_vocab}: KL-divergence needs the same vocabulary. Compare formats of the same model."
        )
    own = runner.tokenize(text.text)[: len(ref.tokens)]
    if not np.array_equal(own, ref.tokens[: len(own)]):
        raise InvalidInput(
            f"{model.name} tokenizes the text differently from the reference {name}: they do not share a "
            "tokenizer, so their next-token distributions cannot be compared."
        )
    return np.asarray(ref.tokens)


def _score(
    runner: Runner,
    path: Path,
    tokens: np.ndarray,
    n_chunks: int,
    ref: ReferenceLogits | None,
    stages: _Stages,
    cancel: CancelToken,
) -> _Numbers:
    nll_parts, kld_parts, top1_hits = [], [], 0
    row = 0
    for i, (logits, targets) in enumerate(runner.chunks(tokens, n_chunks)):
        cancel.raise_if_cancelled()
        _refuse_non_finite(logits, path)
        lp = metrics.log_softmax(logits)
        nll_parts.append(metrics.token_nll(lp, targets))
        if ref is not None:
            rows = slice(row, row + len(targets))
            kld_parts.append(metrics.token_kld(ref.log_probs(rows), lp))
            top1_hits += int((logits.argmax(axis=1) == ref.top1[rows]).sum())
        row += len(targets)
        stages("model", i + 1, n_chunks)
    nll = np.concatenate(nll_parts)
    ppl = float(np.exp(nll.mean()))
    if ref is None:
        return _Numbers(ppl, len(nll))
    kld = np.concatenate(kld_parts)
    ref_ppl = float(np.exp(np.asarray(ref.nll).mean()))
    return _Numbers(
        perplexity=ppl,
        tokens=len(nll),
        reference_perplexity=ref_ppl,
        delta_perplexity=ppl - ref_ppl,
        kld_mean=float(kld.mean()),
        kld_p99=metrics.percentile(kld, 0.99),
        top1_agreement=top1_hits / len(nll),
    )
