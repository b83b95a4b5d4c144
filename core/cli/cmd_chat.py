"""``quantpress chat MODEL``: one answer with ``--prompt`` (``--json`` for scripts), else a REPL."""

from __future__ import annotations

import argparse
import sys

from quantpress.core.cli.output import format_bytes, print_json

ORDER = 60
KV_CHOICES = ("f16", "q8_0", "q4_0")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("chat", help="chat with a GGUF model or an AWQ folder (one prompt, or an interactive session)")
    p.add_argument("model", help="a .gguf file or an AWQ output folder")
    p.add_argument("--prompt", help="ask this and exit (without it: interactive; /reset clears, /quit exits)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-tokens", type=int, default=512, help="longest answer in tokens (default 512)")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = always the most likely token (default 0.7)")
    p.add_argument("--seed", type=int, help="sampling seed (default: random)")
    p.add_argument("--ctx", type=int, default=2048, help="context length in tokens (default 2048)")
    p.add_argument("--kv-type", choices=KV_CHOICES, default="f16", help="KV cache type for keys and values")
    p.add_argument("--threads", type=int, help="CPU threads (default: llama.cpp's choice)")
    p.add_argument("--gpu-layers", type=int, help="layers on the GPU, -1 for all (default: the estimate's placement)")
    p.add_argument("--n-cpu-moe", type=int, metavar="N",
                   help="mixture-of-experts models: keep the routed experts of the first N layers in RAM, every "
                        "other weight on the GPU (llama.cpp's --n-cpu-moe; default: the estimate's placement)")
    p.add_argument("--json", action="store_true", help="print text, tokens, tokens_per_second as JSON")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from quantpress.core.chat import ChatSettings, KVCacheType

    kv = KVCacheType(args.kv_type)
    extra = {"system_prompt": args.system} if args.system is not None else {}
    return ChatSettings(
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        seed=args.seed,
        ctx_tokens=args.ctx,
        threads=args.threads,
        gpu_layers=args.gpu_layers,
        n_cpu_moe=args.n_cpu_moe,
        kv_type_k=kv,
        kv_type_v=kv,
        **extra,
    )


def run(args: argparse.Namespace) -> int:
    from quantpress.core.chat import ChatSession
    from quantpress.core.errors import InvalidInput

    if args.max_tokens < 1 or args.ctx < 64:
        raise InvalidInput("--max-tokens must be at least 1 and --ctx at least 64.")
    session = ChatSession.load(args.model, _settings(args))
    try:
        if args.prompt is not None:
            return _one_shot(session, args.prompt, as_json=args.json)
        return _repl(session)
    finally:
        session.close()


def _echo(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _one_shot(session, prompt: str, *, as_json: bool) -> int:  # type: ignore[no-untyped-def]
    reply = session.send(prompt, on_token=None if as_json else _echo)
    if as_json:
        stats = reply.stats
        print_json(
            {
                "text": reply.text,
                "tokens": reply.tokens,
                "tokens_per_second": stats.generation_tokens_per_second,
                "prompt_tokens_per_second": stats.prompt_tokens_per_second,
                "finish_reason": stats.finish_reason,
                "fallback_template": session.uses_fallback_template,
                "memory": session.memory(),
            }
        )
    else:
        sys.stdout.write("\n")
    return 0


def _repl(session) -> int:  # type: ignore[no-untyped-def]
    mem = session.memory()
    print(f"model {session.backend.path.name}: {format_bytes(mem.model_bytes)} + KV cache {format_bytes(mem.kv_cache_bytes)}")
    if mem.placement:
        print(f"runs on: {mem.placement}")
    if session.uses_fallback_template:
        print("note: this model has no chat template; a plain 'User:/Assistant:' format is used")
    print("type /reset to start over, /quit to leave; Ctrl-C stops an answer")
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return 0
        if line.strip() in ("/quit", "/exit"):
            return 0
        if line.strip() == "/reset":
            session.clear()
            continue
        if not line.strip():
            continue
        try:
            reply = session.send(line, on_token=_echo)
        except KeyboardInterrupt:
            print("\n[stopped]")
            continue
        tps = reply.stats.generation_tokens_per_second
        print(f"\n[{reply.tokens} tokens, {tps:.1f} tokens/s]" if tps else "")
