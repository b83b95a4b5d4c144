"""GGUF conversion: quantpress's one-pass converter vs llama.cpp's pipeline on the demo model.

llama.cpp pipeline = its convert_hf_to_gguf.py from the llama-cpp-python sdist (vendored gguf-py on
PYTHONPATH) to F16, then ``llama_model_quantize`` (llama-cpp-python ctypes), with the same imatrix
when calibrated. Measures wall time and peak RSS (each step in its own process, os.wait4) and
KL-divergence to the F32 GGUF on held-out text (resources/eval/heldout.txt, never the calibration
text), per format.

    .venv/bin/python -m benchmarks.convert [--formats Q4_K_M,Q8_0] [--chunks 2] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

SDIST = Path("/tmp/dl/llama_cpp_python-0.3.36.tar.gz")
ALL = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "IQ4_NL", "IQ4_XS", "Q4_K_S", "Q4_K_M", "Q5_0",
       "Q5_1", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0"]
ROOT = Path(__file__).resolve().parent.parent


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds and peak RSS bytes of one child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # files: pipes could fill
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode:
            raise RuntimeError(f"{cmd[:4]} failed: {err.read()[-2000:]}")
        return seconds, usage.ru_maxrss * 1024, out.read()


def vendor_dir(work: Path) -> Path:
    dst = work / "sdist"
    if not dst.exists():
        with tarfile.open(SDIST) as tar:
            members = [m for m in tar.getmembers()
                       if "/vendor/llama.cpp/" in m.name and ("/gguf-py/" in m.name or "/conversion/" in m.name
                                                               or m.name.endswith("convert_hf_to_gguf.py"))]
            tar.extractall(dst, members=members, filter="data")
    return next(dst.glob("*/vendor/llama.cpp"))


def heldout_chunks(model_dir: Path, n_chunks: int, n_ctx: int) -> list[list[int]]:
    from tokenizers import Tokenizer

    text = (ROOT / "resources" / "eval" / "heldout.txt").read_text()
    ids = Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(text).ids
    return [ids[i * n_ctx:(i + 1) * n_ctx] for i in range(n_chunks)]


def logprobs(path: Path, chunks: list[list[int]]) -> list[np.ndarray]:
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=max(len(c) for c in chunks), logits_all=True, verbose=False, type_k=0, type_v=0)
    out = []
    for c in chunks:
        llm.reset()
        llm.eval(c)
        lg = np.array(llm.scores[: len(c)], dtype=np.float64)
        m = lg.max(axis=1, keepdims=True)
        out.append(lg - m - np.log(np.exp(lg - m).sum(axis=1, keepdims=True)))
    llm.close()
    return out


def kld(ref: list[np.ndarray], q: list[np.ndarray]) -> float:
    return float(np.mean(np.concatenate([(np.exp(r) * (r - x)).sum(axis=1) for r, x in zip(ref, q, strict=False)])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default=",".join(ALL), help="formats for size and KLD")
    ap.add_argument("--time-formats", default="Q2_K,Q4_K_M,Q8_0", help="formats timed end to end")
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--no-imatrix", action="store_true")
    ap.add_argument("--write", action="store_true", help="replace the '## GGUF conversion' section of BENCHMARKS.md")
    args = ap.parse_args()
    formats = args.formats.split(",")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.gguf.reader import open_gguf
    from quantpress.core.gguf.reference import llama_quantize

    model = ensure_demo_model()
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="qp-bench-"))
    vendor = vendor_dir(Path(tempfile.gettempdir()) / "qp-bench-sdist")
    env = dict(os.environ, PYTHONPATH=str(vendor / "gguf-py"))

    # -- timing: llama.cpp = convert to F16 once + quantize; quantpress = one pass per format
    t_conv, rss_conv, _ = run_measured([py, str(vendor / "convert_hf_to_gguf.py"), str(model), "--outtype", "f16",
                                        "--outfile", str(work / "ref-F16.gguf")], env)
    rows: dict[str, dict[str, float]] = {f: {} for f in formats}
    timed = [f for f in args.time_formats.split(",") if f in formats]
    for fmt in timed:
        code = (f"from pathlib import Path; from quantpress.core.gguf.reference import llama_quantize; "
                f"llama_quantize(Path({str(work / 'ref-F16.gguf')!r}), Path({str(work / f'ref-{fmt}.gguf')!r}), {fmt!r})")
        t_q, rss_q, _ = run_measured([py, "-c", code])
        t_qp, rss_qp, _ = run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "-f", fmt,
                                        "--out", str(work), "--json"])
        rows[fmt] = {"ref_s": t_conv + t_q, "ref_rss": max(rss_conv, rss_q), "qp_s": t_qp, "qp_rss": rss_qp}
        print(f"{fmt}: llama.cpp {t_conv + t_q:.1f}s, quantpress {t_qp:.1f}s", file=sys.stderr)
    t_all, rss_all, _ = run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "--out",
                                      str(work / "all"), "--json"] + [a for f in formats for a in ("-f", f)])

    # -- quality: KLD to the F32 GGUF on held-out text
    run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "-f", "F32", "--out", str(work), "--json"])
    chunks = heldout_chunks(model, args.chunks, args.n_ctx)
    ref = logprobs(work / f"{model.name}-F32.gguf", chunks)
    with open_gguf(work / f"{model.name}-F32.gguf") as g:
        largest = max(t.n_bytes for t in g.tensors)
    for fmt in formats:
        if not (work / f"ref-{fmt}.gguf").exists():
            llama_quantize(work / "ref-F16.gguf", work / f"ref-{fmt}.gguf", fmt)
        rows[fmt]["ref_bytes"] = (work / f"ref-{fmt}.gguf").stat().st_size
        rows[fmt]["qp_bytes"] = (work / "all" / f"{model.name}-{fmt}.gguf").stat().st_size
        rows[fmt]["ref_kld"] = kld(ref, logprobs(work / f"ref-{fmt}.gguf", chunks))
        rows[fmt]["qp_kld"] = kld(ref, logprobs(work / "all" / f"{model.name}-{fmt}.gguf", chunks))
    if not args.no_imatrix:
        from quantpress.core.calibration import compute_imatrix, save_imatrix

        imx = compute_imatrix(model)
        save_imatrix(imx, work / "imatrix.gguf")
        means = {n: imx.importance(n) for n in imx.names}
        (work / "im").mkdir()
        run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "--imatrix", str(work / "imatrix.gguf"),
                      "--out", str(work / "im"), "--json"] + [a for f in formats for a in ("-f", f)])
        for fmt in formats:
            llama_quantize(work / "ref-F16.gguf", work / f"refim-{fmt}.gguf", fmt, imatrix=means)
            rows[fmt]["ref_kld_im"] = kld(ref, logprobs(work / f"refim-{fmt}.gguf", chunks))
            rows[fmt]["qp_kld_im"] = kld(ref, logprobs(work / "im" / f"{model.name}-{fmt}.gguf", chunks))
            rows[fmt]["qp_bytes_im"] = (work / "im" / f"{model.name}-{fmt}.gguf").stat().st_size
        n_tokens = imx.n_tokens
    else:
        n_tokens = 0
    report = render(rows, formats, t_all, rss_all, largest, args, n_tokens)
    print(report)
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    if args.write:
        write_section(report)


def render(rows: dict[str, dict[str, float]], formats: list[str], t_all: float, rss_all: int, largest: int,
           args: argparse.Namespace, n_tokens: int) -> str:
    mib = 2**20
    lines = [
        "## GGUF conversion", "",
        "Demo model SmolLM2-135M-Instruct (F32 safetensors, 576-wide rows), 2 shared CPU cores. "
        "llama.cpp = vendored convert_hf_to_gguf.py → F16 file, then llama_model_quantize; quantpress = "
        "`quantpress convert` (one pass, no intermediate file, policy quantpress). Time/RSS per process "
        f"(os.wait4). KLD to the F32 GGUF on held-out text ({args.chunks}×{args.n_ctx} tokens of "
        "resources/eval/heldout.txt), F32 KV cache. imatrix: default calibration text "
        f"({n_tokens} tokens), the same matrix given to both.", "",
        "Command: `.venv/bin/python -m benchmarks.convert --write`", "",
        "| format | llama.cpp MiB | quantpress MiB | llama.cpp s | quantpress s | llama.cpp peak RSS MiB | "
        "quantpress peak RSS MiB | KLD llama.cpp | KLD quantpress | KLD llama.cpp+imatrix | KLD quantpress+imatrix |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for f in formats:
        r = rows[f]
        lines.append(
            f"| {f} | {r['ref_bytes'] / mib:.1f} | {r['qp_bytes'] / mib:.1f} | {r.get('ref_s', nan):.1f} | "
            f"{r.get('qp_s', nan):.1f} | {r.get('ref_rss', nan) / mib:.0f} | {r.get('qp_rss', nan) / mib:.0f} | "
            f"{r['ref_kld']:.4f} | {r['qp_kld']:.4f} | "
            f"{r.get('ref_kld_im', float('nan')):.4f} | {r.get('qp_kld_im', float('nan')):.4f} |")
    lines += ["", "Time/RSS columns: only the formats in --time-formats are timed end to end (llama.cpp time = "
              "its F16 conversion + quantize; nan = not timed). Sizes and KLD for every format.", "",
              f"All {len(formats)} formats in one quantpress pass: {t_all:.1f} s, peak RSS {rss_all / mib:.0f} MiB "
              f"(largest tensor {largest / mib:.0f} MiB; issue bound = 4× + 300 MiB = {(4 * largest) / mib + 300:.0f} MiB).",
              ""]
    return "\n".join(lines)


def write_section(section: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find("## GGUF conversion")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 3)
        text = text[:start] + section + ("" if end < 0 else text[end:])
    path.write_text(text)


if __name__ == "__main__":
    main()
