"""Chat speed and KV-cache memory/quality, against llama-cpp-python used directly.

    .venv/bin/python -m benchmarks.chat_speed [--model GGUF] [--tokens 128] [--rounds 5] [--threads 1]
        [--skip-speed] [--skip-kv] [--formats Q8_0,Q4_K_M,Q2_K]

1. Generation tokens/s: ``ChatSession.send`` vs ``llama_cpp.Llama.create_completion(stream=True)`` with
   the same prompt tokens, the same sampling (greedy, so both produce the same tokens) and the same
   context/threads. Both are timed the same way, from outside: time between the first and the last
   streamed token. Rounds alternate between the two paths (this machine is shared, so the median of
   alternating rounds is what is fair). Target: quantpress >= 95% of direct.
2. KV cache f16 vs q8_0 vs q4_0: bytes computed by quantpress, llama.cpp's own "KV buffer size" log line,
   the process RSS growth (fresh process each, flash attention on for all so only the cache type differs),
   and the KL-divergence the quantized cache costs against the same model with an f16 cache.
3. Optional (--formats): the converter's outputs for the demo model, file size vs PPL/KLD/top-1 against F32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from quantpress.core.chat import (
    ChatSession,
    ChatSettings,
    KVCacheType,
    Message,
    Role,
    kv_cache_bytes,
    read_gguf_shape,
)

from tests.llama_log import captured_llama_log

PROMPT = "Write a long story about a lighthouse keeper and a storm."
RSS_CTX = 16384


def _settings(args: argparse.Namespace, kv: KVCacheType = KVCacheType.F16, ctx: int = 2048) -> ChatSettings:
    return ChatSettings(temperature=0.0, top_k=40, top_p=0.9, repeat_penalty=1.1, max_tokens=args.tokens,
                        seed=1, ctx_tokens=ctx, threads=args.threads, kv_type_k=kv, kv_type_v=kv)


def _rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _quantpress_round(session: ChatSession) -> tuple[float, int]:
    session.clear()
    session.backend.llama.reset()  # no KV prefix reuse between rounds: same work as the direct path
    stamps: list[float] = []
    reply = session.send(PROMPT, on_token=lambda _: stamps.append(time.perf_counter()))
    return _rate(stamps), reply.tokens


def _direct_round(llm: object, prompt: list[int], args: argparse.Namespace) -> tuple[float, int]:
    llm.reset()  # type: ignore[attr-defined]
    stamps: list[float] = []
    stream = llm.create_completion(  # type: ignore[attr-defined]
        prompt, max_tokens=args.tokens, temperature=0.0, top_k=40, top_p=0.9, min_p=0.0, repeat_penalty=1.1,
        seed=1, stream=True,
    )
    for chunk in stream:
        if chunk["choices"][0]["finish_reason"] is None:  # the closing chunk carries no token
            stamps.append(time.perf_counter())
    return _rate(stamps), len(stamps)


def speed(args: argparse.Namespace) -> tuple[float, float]:
    import llama_cpp

    session = ChatSession.load(args.model, _settings(args))
    prompt = session.backend.encode_chat([Message(Role.USER, PROMPT)])
    direct = llama_cpp.Llama(str(args.model), n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=args.threads,
                             n_threads_batch=args.threads, seed=1, verbose=False)
    ours, theirs = [], []
    print(f"\n## generation speed ({args.tokens} tokens, greedy, {args.threads} thread(s), {args.rounds} rounds)")
    print("| round | quantpress tok/s | llama-cpp-python tok/s | tokens (qp / direct) |")
    print("|---|---|---|---|")
    for i in range(args.rounds):
        q, nq = _quantpress_round(session)
        d, nd = _direct_round(direct, prompt, args)
        ours.append(q)
        theirs.append(d)
        print(f"| {i + 1} | {q:.1f} | {d:.1f} | {nq} / {nd} |")
    session.close()
    direct.close()
    q, d = statistics.median(ours), statistics.median(theirs)
    print(f"| median | {q:.1f} | {d:.1f} | ratio {100 * q / d:.1f}% |")
    return q, d


def _llama_kv_mib(model: Path, kv: KVCacheType, args: argparse.Namespace) -> float:
    with captured_llama_log() as lines:
        ChatSession.load(model, _settings(args, kv, RSS_CTX)).close()
    return sum(float(x.split("=")[1].split("MiB")[0]) for x in lines if "KV buffer size" in x)


_RSS_PROBE = """
import json, sys, psutil, llama_cpp
before = psutil.Process().memory_info().rss
llm = llama_cpp.Llama(sys.argv[1], n_ctx=int(sys.argv[3]), type_k=int(sys.argv[2]), type_v=int(sys.argv[2]),
                      flash_attn=True, n_threads=1, verbose=False)
print(json.dumps(psutil.Process().memory_info().rss - before))
"""
GGML_TYPE = {KVCacheType.F16: 1, KVCacheType.Q8_0: 8, KVCacheType.Q4_0: 2}


def _rss_mib(model: Path, kv: KVCacheType) -> float:
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(model), str(GGML_TYPE[kv]), str(RSS_CTX)],
                         capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])) / 2**20


def kv_memory_and_kld(args: argparse.Namespace) -> None:
    from quantpress.core.evaluate import evaluate

    shape = read_gguf_shape(args.model)
    print(f"\n## KV cache at {RSS_CTX} tokens of context; KLD vs the same model with an f16 cache, no flash attn "
          f"(built-in text, ctx {args.eval_ctx}, {args.eval_tokens} tokens)")
    print("| KV type | computed MiB | llama.cpp KV buffer MiB | RSS growth MiB | KLD mean | KLD p99 | top-1 |")
    print("|---|---|---|---|---|---|---|")
    rows = [(kv, None) for kv in KVCacheType]
    rows.insert(1, (KVCacheType.F16, True))  # flash attention alone, to separate its effect from the cache type
    for kv, fa in rows:
        label = f"{kv.value}{' + flash attn' if fa else ''}"
        if fa:
            computed = logged = rss = float("nan")
        else:
            computed = kv_cache_bytes(shape, RSS_CTX, kv, kv) / 2**20
            logged = _llama_kv_mib(args.model, kv, args)
            rss = _rss_mib(args.model, kv)
        r = evaluate(args.model, args.model, kv_type=kv, flash_attn=fa, ctx_tokens=args.eval_ctx,
                     max_tokens=args.eval_tokens, threads=args.threads, save=False)
        print(f"| {label} | {computed:.1f} | {logged:.1f} | {rss:.1f} | {r.kld_mean:.6f} | {r.kld_p99:.6f} "
              f"| {100 * (r.top1_agreement or 0):.2f}% |")
    print("\nThe cache type alone: reference = the same model, f16 cache WITH flash attention")
    print("| KV type | KLD mean | KLD p99 | top-1 |")
    print("|---|---|---|---|")
    for kv in (KVCacheType.Q8_0, KVCacheType.Q4_0):
        r = evaluate(args.model, args.model, kv_type=kv, reference_flash_attn=True, ctx_tokens=args.eval_ctx,
                     max_tokens=args.eval_tokens, threads=args.threads, save=False)
        print(f"| {kv.value} | {r.kld_mean:.6f} | {r.kld_p99:.6f} | {100 * (r.top1_agreement or 0):.2f}% |")


def converted_formats(args: argparse.Namespace) -> None:
    """Size vs quality of the converter's outputs for the demo model, against its F32 conversion."""
    import tempfile

    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.evaluate import evaluate
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source

    formats = ["F32", *args.formats.upper().split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_conversion(open_source(ensure_demo_model()), formats, Path(tmp))
        convert(plan)
        paths = {f: Path(o.path) for f, o in zip(formats, plan.outputs, strict=True)}
        print(f"\n## converter outputs vs F32 (built-in text, ctx {args.eval_ctx}, {args.eval_tokens} tokens)")
        print("| format | file MiB | PPL | ΔPPL | KLD mean | KLD p99 | top-1 |")
        print("|---|---|---|---|---|---|---|")
        for f in formats:
            r = evaluate(paths[f], paths["F32"], ctx_tokens=args.eval_ctx, max_tokens=args.eval_tokens,
                         threads=args.threads, save=False)
            print(f"| {f} | {r.model_bytes / 2**20:.1f} | {r.perplexity:.3f} | {r.delta_perplexity:+.3f} "
                  f"| {r.kld_mean:.5f} | {r.kld_p99:.5f} | {100 * (r.top1_agreement or 0):.2f}% |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="a GGUF (default: the demo model's Q4_1 GGUF)")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-ctx", type=int, default=256)
    p.add_argument("--eval-tokens", type=int, default=2048)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-kv", action="store_true")
    p.add_argument("--formats", help="also convert the demo model to these formats (e.g. Q8_0,Q4_K_M,Q2_K) "
                   "and compare them with its F32 conversion")
    args = p.parse_args()
    if args.model is None:
        from quantpress.core.demo import demo_gguf_path

        args.model = demo_gguf_path()
    import llama_cpp

    print(f"model {args.model.name}, llama-cpp-python {llama_cpp.__version__}")
    if not args.skip_speed:
        speed(args)
    if not args.skip_kv:
        kv_memory_and_kld(args)
    if args.formats:
        converted_formats(args)


if __name__ == "__main__":
    main()
