"""Claim: the CPU RAM estimate is within 10% of the peak RSS increase measured when llama-cpp-python
loads a GGUF and evaluates a full context; GGUF file sizes are predicted exactly.

    .venv/bin/python -m benchmarks.estimate_memory [--contexts 512 2048] [--quick]

Reference = the measurement (a fresh subprocess per point: llama_cpp.Llama(n_ctx) + eval of n_ctx
tokens; peak RSS minus RSS before the load). Models: the demo SmolLM2-135M (its original Q4_1
GGUF and quantpress conversions to F16/Q8_0/Q4_K_M/Q2_K) and tiny generated llama/gemma3 (SWA)
models (tests/tiny_models.py) converted to F16.
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


def predict_cpu(path: Path, cfg: mem.RuntimeConfig) -> int:
    """The estimator's CPU-only RAM for the file as it is (row 'FILE')."""
    hw = detect_hardware().with_overrides(vram_gib=0)
    est = estimate(open_model(path), hw, cfg, formats=[])
    return est.formats[0].cpu_only_bytes


def run(contexts: tuple[int, ...], quick: bool) -> list[Point]:
    points = []
    for label, path, file_pred in build_ggufs(cache_dir() / "bench" / "estimate_memory", quick):
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
    args = ap.parse_args(argv)
    print(table(run(tuple(args.contexts), args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
