"""Claim: the CPU RAM estimate is within 10% of the peak RSS increase measured when llama-cpp-python
loads a GGUF and evaluates a full context; GGUF file sizes are predicted exactly.

    .venv/bin/python -m benchmarks.estimate_memory [--contexts 512 2048] [--quick]

Reference = the measurement (a fresh subprocess per point: llama_cpp.Llama(n_ctx) + eval of n_ctx
tokens; peak RSS minus RSS before the load). Models: the demo SmolLM2-135M (its original Q4_1
GGUF and quantpress conversions to F16/Q8_0/Q4_K_M/Q2_K) and tiny generated llama/gemma3 (SWA)
models (tests/tiny_models.py) converted to F16. ``--hybrid``: instead, a Qwen3.5-shaped Gated
DeltaNet hybrid (tests/tiny_hybrid.py 'qwen35-mid', 6 recurrent + 2 attention layers, converted
by quantpress to Q8_0) and a Gemma-2-shaped model (sliding window 256 on every other layer,
converted to F16 by llama.cpp's own converter), e.g. ``--hybrid --contexts 2048 8192``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from quantpress.core import memory as mem
from quantpress.core.demo import demo_gguf_path, ensure_demo_model
from quantpress.core.estimate import estimate
from quantpress.core.hardware import detect_hardware
from quantpress.core.inspect import open_model
from quantpress.core.paths import cache_dir

from tests.rss_probe import measure_rss_increase

MIB = 1024**2
DEMO_FORMATS = ("F16", "Q8_0", "Q4_K_M", "Q2_K")


@dataclass(frozen=True)
class Point:
    label: str
    n_ctx: int
    predicted: int
    measured: int
    file_predicted: int | None
    file_actual: int

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured


def build_ggufs(workdir: Path, quick: bool = False) -> list[tuple[str, Path, int | None]]:
    """(label, gguf path, predicted file bytes) for every model measured."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    workdir.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path, int | None]] = []
    demo_dir = ensure_demo_model()
    src = demo_gguf_path()
    out.append(("demo Q4_1 (PyPI file)", src, None))
    formats = DEMO_FORMATS[:2] if quick else DEMO_FORMATS
    plan = plan_conversion(open_model(demo_dir), list(formats), workdir)
    todo = [o for o in plan.outputs if not Path(o.path).is_file() or Path(o.path).stat().st_size != o.file_bytes]
    if todo:
        import dataclasses

        convert(dataclasses.replace(plan, outputs=tuple(todo)))
    out += [(f"demo {o.format}", Path(o.path), o.file_bytes) for o in plan.outputs]
    if not quick:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_models import tiny_model

        for arch in ("llama", "gemma3"):
            folder = tiny_model(arch, workdir / "tiny")
            p = plan_conversion(open_model(folder), ["F16"], workdir)
            o = p.outputs[0]
            if not Path(o.path).is_file() or Path(o.path).stat().st_size != o.file_bytes:
                convert(p)
            out.append((f"tiny-{arch} F16", Path(o.path), o.file_bytes))
    return out


def build_hybrid_ggufs(workdir: Path) -> list[tuple[str, Path, int | None]]:
    """The hybrid-memory models: a Qwen3.5-shaped one (quantpress Q8_0) and a Gemma-2-shaped one
    (llama.cpp's converter, F16: Gemma 2 conversion is not quantpress's yet)."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from llama_reference import reference_gguf
    from tiny_hybrid import tiny_hybrid

    workdir.mkdir(parents=True, exist_ok=True)
    plan = plan_conversion(open_model(tiny_hybrid("qwen35-mid", workdir / "tiny")), ["Q8_0"], workdir)
    o = plan.outputs[0]
    if not Path(o.path).is_file() or Path(o.path).stat().st_size != o.file_bytes:
        convert(plan)
    gemma2 = workdir / "gemma2-F16.gguf"
    if not gemma2.is_file():
        reference_gguf(_gemma2_folder(workdir / "tiny" / "gemma2"), gemma2, outtype="f16")
    return [("qwen35-shaped Q8_0 (hybrid)", Path(o.path), o.file_bytes), ("gemma2-shaped F16 (SWA 256)", gemma2, None)]


def _gemma2_folder(folder: Path) -> Path:
    """A random Gemma2ForCausalLM: 6 layers alternating sliding (window 256) and global attention,
    head_dim 128, soft-capping, a SentencePiece vocabulary (tests/tiny_models.py)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers
    from tiny_models import _write_spm

    folder.mkdir(parents=True)
    ids = _write_spm(folder)
    config = transformers.Gemma2Config(
        vocab_size=384, hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8,
        num_key_value_heads=4, head_dim=128, sliding_window=256, max_position_embeddings=8192,
        query_pre_attn_scalar=128, pad_token_id=0, **ids)
    torch.manual_seed(0)
    transformers.Gemma2ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    return folder


def build_moe_ggufs(workdir: Path) -> list[tuple[str, Path, int | None]]:
    """The mixture-of-experts files: a generated Qwen3-MoE (Q4_K_M, MXFP4_MOE) and a tiny DeepSeek-V3 (Q8_0)."""
    import tempfile

    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    from benchmarks.convert_moe import build
    from benchmarks.moe_quality import CONFIG

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_models import tiny_model

    workdir.mkdir(parents=True, exist_ok=True)
    qwen = build(Path(tempfile.gettempdir()) / "qp-large" / "gen-qwen3moe-16x-small", config=CONFIG)
    sources = ((qwen, ("Q4_K_M", "MXFP4_MOE"), "generated Qwen3-MoE 16x"),
               (tiny_model("deepseekv3", workdir / "tiny"), ("Q8_0",), "tiny DeepSeek-V3 (MLA)"))
    out: list[tuple[str, Path, int | None]] = []
    for folder, formats, label in sources:
        plan = plan_conversion(open_model(folder), list(formats), workdir)
        if any(not Path(o.path).is_file() or Path(o.path).stat().st_size != o.file_bytes for o in plan.outputs):
            convert(plan)
        out += [(f"{label} {o.format}", Path(o.path), o.file_bytes) for o in plan.outputs]
    return out


def predict_cpu(path: Path, cfg: mem.RuntimeConfig) -> int:
    """The estimator's CPU-only RAM for the file as it is (row 'FILE')."""
    hw = detect_hardware().with_overrides(vram_gib=0)
    est = estimate(open_model(path), hw, cfg, formats=[])
    return est.formats[0].cpu_only_bytes


def run(contexts: tuple[int, ...], quick: bool, hybrid: bool = False, moe: bool = False) -> list[Point]:
    points = []
    workdir = cache_dir() / "bench" / "estimate_memory"
    files = (build_hybrid_ggufs(workdir) if hybrid else build_moe_ggufs(workdir / "moe") if moe
             else build_ggufs(workdir, quick))
    for label, path, file_pred in files:
        for n_ctx in contexts:
            cfg = mem.RuntimeConfig(n_ctx=n_ctx)
            points.append(Point(label, n_ctx, predict_cpu(path, cfg), measure_rss_increase(str(path), cfg),
                                file_pred, path.stat().st_size))
    return points


def table(points: list[Point]) -> str:
    lines = ["| model / format | n_ctx | predicted RAM MiB | measured ΔRSS MiB | error | predicted file B | actual file B |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        fp = "n/a (source file)" if p.file_predicted is None else str(p.file_predicted)
        lines.append(f"| {p.label} | {p.n_ctx} | {p.predicted / MIB:.1f} | {p.measured / MIB:.1f} | "
                     f"{p.error * 100:+.1f}% | {fp} | {p.file_actual} |")
    worst = max(abs(p.error) for p in points)
    lines.append(f"\nworst |error| = {worst * 100:.1f}% over {len(points)} points "
                 f"(target: 10%); file sizes exact: {all(p.file_predicted in (None, p.file_actual) for p in points)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contexts", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--quick", action="store_true", help="demo Q4_1, F16 and Q8_0 only")
    ap.add_argument("--hybrid", action="store_true",
                    help="only the hybrid-memory models: Qwen3.5-shaped (DeltaNet) and Gemma-2-shaped (SWA)")
    ap.add_argument("--moe", action="store_true",
                    help="only mixture-of-experts files: generated Qwen3-MoE (Q4_K_M, MXFP4_MOE), tiny DeepSeek-V3 (MLA)")
    args = ap.parse_args(argv)
    print(table(run(tuple(args.contexts), args.quick, args.hybrid, args.moe)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
