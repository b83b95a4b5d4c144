"""GGUF conversion: quantpress's one-pass converter vs llama.cpp's pipeline on the demo model.

llama.cpp pipeline = its convert_hf_to_gguf.py from the llama-cpp-python sdist (vendored gguf-py on
PYTHONPATH) to F16, then ``llama_model_quantize`` (llama-cpp-python ctypes), with the same imatrix
when calibrated. Measures wall time and peak RSS (each step in its own process, os.wait4) and
KL-divergence to the F32 GGUF on held-out text (resources/eval/heldout.txt, never the calibration
text), per format.

    .venv/bin/python -m benchmarks.convert [--model demo|finetuned|scratch] [--formats Q4_K_M,Q8_0] [--chunks 2] [--write]

--model picks the test model (benchmarks/trained_models.py): the demo (weights on a Q4_1 grid), or one
of the two whose weights were never quantized. Each writes its own section of BENCHMARKS.md; the
"worse" column names every format whose quantpress KLD is above llama.cpp's by more than 2 paired SE.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.trained_models import DESCRIPTIONS

SDIST_DIR = Path(tempfile.gettempdir()) / "qp-bench-sdist"
ALL = ["F16", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "IQ4_NL", "IQ4_XS", "Q4_K_S", "Q4_K_M", "Q5_0",
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


def fetch_sdist(folder: Path) -> Path:
    """llama-cpp-python's source distribution (same version as installed), from PyPI's simple index."""
    import urllib.request
    from importlib.metadata import version

    name = f"llama_cpp_python-{version('llama_cpp_python')}.tar.gz"
    path = folder / name
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    req = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read().decode()
    try:  # PEP 691 JSON; some mirrors and proxies answer with the PEP 503 HTML page instead
        url = next(f["url"] for f in json.loads(body)["files"] if f["filename"] == name)
    except json.JSONDecodeError:
        url = next(u for u in re.findall(r'href="([^"]+)"', body) if u.split("#")[0].endswith("/" + name))
    tmp = path.with_suffix(".part")
    urllib.request.urlretrieve(url, tmp)
    tmp.rename(path)
    return path


def vendor_dir(work: Path) -> Path:
    dst = work / "sdist"
    if not dst.exists():
        with tarfile.open(fetch_sdist(work)) as tar:
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


def kld_tokens(ref: list[np.ndarray], q: list[np.ndarray]) -> np.ndarray:
    """KL(ref || q) per token."""
    return np.concatenate([(np.exp(r) * (r - x)).sum(axis=1) for r, x in zip(ref, q, strict=False)])


def kld(ref: list[np.ndarray], q: list[np.ndarray]) -> float:
    return float(np.mean(kld_tokens(ref, q)))


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b over the same tokens and its standard error."""
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def time_pipelines(model: Path, formats: list[str], timed: list[str], work: Path) -> dict[str, dict[str, float]]:
    """Wall time and peak RSS per format. llama.cpp = its converter to F16 once (its time counted in
    every format) + llama_model_quantize; quantpress = one ``quantpress convert`` process per format."""
    py = sys.executable
    vendor = vendor_dir(SDIST_DIR)
    env = dict(os.environ, PYTHONPATH=str(vendor / "gguf-py"))
    t_conv, rss_conv, _ = run_measured([py, str(vendor / "convert_hf_to_gguf.py"), str(model), "--outtype", "f16",
                                        "--outfile", str(work / "ref-F16.gguf")], env)
    print(f"llama.cpp F16 conversion: {t_conv:.1f}s, peak RSS {rss_conv / 2**20:.0f} MiB", file=sys.stderr)
    rows: dict[str, dict[str, float]] = {f: {} for f in formats}
    for fmt in timed:
        code = (f"from pathlib import Path; from quantpress.core.gguf.reference import llama_quantize; "
                f"llama_quantize(Path({str(work / 'ref-F16.gguf')!r}), Path({str(work / f'ref-{fmt}.gguf')!r}), {fmt!r})")
        t_q, rss_q, _ = run_measured([py, "-c", code])
        t_qp, rss_qp, _ = run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "-f", fmt,
                                        "--out", str(work), "--json"])
        rows[fmt] = {"ref_s": t_conv + t_q, "ref_rss": max(rss_conv, rss_q), "qp_s": t_qp, "qp_rss": rss_qp,
                     "ref_conv_s": t_conv, "ref_f16_bytes": (work / "ref-F16.gguf").stat().st_size,
                     "ref_bytes": (work / f"ref-{fmt}.gguf").stat().st_size,
                     "qp_bytes": (work / f"{model.name}-{fmt}.gguf").stat().st_size}
        print(f"{fmt}: llama.cpp {t_conv + t_q:.1f}s {max(rss_conv, rss_q) / 2**20:.0f} MiB, "
              f"quantpress {t_qp:.1f}s {rss_qp / 2**20:.0f} MiB", file=sys.stderr)
    return rows


def largest_source_tensor(model: Path) -> int:
    from quantpress.core.gguf.source import list_hf_tensors

    return max(t.n_bytes for t in list_hf_tensors(model))


def main_large(args: argparse.Namespace) -> None:
    """Speed and memory only, on a ~1.8 GB bf16 generated model (random weights: KLD means nothing)."""
    from quantpress.core.demo import ensure_demo_model

    from benchmarks.generated_model import build

    work = Path(tempfile.mkdtemp(prefix="qp-bench-large-"))
    model = build(Path(tempfile.gettempdir()) / "qp-large" / "gen-llama-0.9b", ensure_demo_model())
    formats = args.time_formats.split(",")
    rows = time_pipelines(model, formats, formats, work)
    largest = largest_source_tensor(model)
    mib = 2**20
    src = sum(p.stat().st_size for p in model.glob("*.safetensors"))
    lines = ["## Conversion of a large generated model", "",
             f"`benchmarks/generated_model.py`: Llama shapes, 0.92 B parameters, {src / mib:.0f} MiB bf16 in two "
             "safetensors shards, random weights, every row a multiple of 256. Same pipelines and measurement as "
             "the section above (each step its own process, os.wait4), measured "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} at the end.", "",
             f"Command: `.venv/bin/python -m benchmarks.convert --large --time-formats {args.time_formats} --write`", "",
             "| format | llama.cpp s (F16 conversion + quantize) | quantpress s | speed-up | llama.cpp peak RSS MiB | "
             "quantpress peak RSS MiB | bound MiB | llama.cpp extra disk MiB | output MiB (llama.cpp / quantpress) |",
             "|---|---|---|---|---|---|---|---|---|"]
    bound = 4 * largest + 300 * mib
    for f in formats:
        r = rows[f]
        lines.append(f"| {f} | {r['ref_s']:.1f} ({r['ref_conv_s']:.1f} + {r['ref_s'] - r['ref_conv_s']:.1f}) | "
                     f"{r['qp_s']:.1f} | {r['ref_s'] / r['qp_s']:.2f}x | {r['ref_rss'] / mib:.0f} | "
                     f"{r['qp_rss'] / mib:.0f} | {bound / mib:.0f} | {r['ref_f16_bytes'] / mib:.0f} | "
                     f"{r['ref_bytes'] / mib:.0f} / {r['qp_bytes'] / mib:.0f} |")
    lines += ["", f"Bound = largest source tensor ({largest / mib:.0f} MiB bf16, the 49,152 x 2,048 embedding) x 4 + "
              "300 MiB. quantpress writes no intermediate file; llama.cpp's F16 file is the extra disk column.", ""]
    report = "\n".join(lines)
    print(report)
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    if args.write:
        write_section(report)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default=",".join(ALL), help="formats for size and KLD")
    ap.add_argument("--time-formats", default="Q2_K,Q4_K_M,Q8_0", help="formats timed end to end")
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--no-imatrix", action="store_true")
    ap.add_argument("--write", action="store_true", help="replace this benchmark's section of BENCHMARKS.md")
    ap.add_argument("--model", default="demo", choices=list(DESCRIPTIONS),
                    help="test model (benchmarks/trained_models.py); the trained ones are built on first use")
    ap.add_argument("--off-grid", action="store_true",
                    help="the demo model with its weights jittered off the Q4_1 grid they were dequantized from "
                         "(implies --no-imatrix: the cached imatrix belongs to the plain demo model)")
    ap.add_argument("--large", action="store_true",
                    help="time --time-formats on a 1.8 GB generated bf16 model instead (no KLD)")
    args = ap.parse_args()
    args.no_imatrix = args.no_imatrix or args.off_grid
    if args.large:
        main_large(args)
        return
    formats = args.formats.split(",")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.gguf.reader import open_gguf
    from quantpress.core.gguf.reference import llama_quantize

    from benchmarks.trained_models import build as build_test_model

    model = build_test_model(args.model, ensure_demo_model())
    if args.off_grid:
        from benchmarks.generated_model import off_grid_demo

        model = off_grid_demo(Path(tempfile.gettempdir()) / "qp-off-grid" / model.name, model)
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="qp-bench-"))
    rows = time_pipelines(model, formats, [f for f in args.time_formats.split(",") if f in formats], work)
    fmt_args = [a for f in formats for a in ("-f", f)]
    t_all, rss_all, _ = run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "--out",
                                      str(work / "all"), "--json"] + fmt_args)
    run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "--calibration", "none", "--out",
                  str(work / "none"), "--json"] + fmt_args)

    # -- quality: KLD to the F32 GGUF on held-out text
    run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "-f", "F32", "--out", str(work), "--json"])
    chunks = heldout_chunks(model, args.chunks, args.n_ctx)
    ref = logprobs(work / f"{model.name}-F32.gguf", chunks)
    with open_gguf(work / f"{model.name}-F32.gguf") as g:
        largest = max(t.n_bytes for t in g.tensors)

    def measure(path: Path) -> np.ndarray:
        return kld_tokens(ref, logprobs(path, chunks))

    for fmt in formats:  # (llama.cpp's F16 is its converter's own output, ref-F16.gguf)
        if not (work / f"ref-{fmt}.gguf").exists():
            llama_quantize(work / "ref-F16.gguf", work / f"ref-{fmt}.gguf", fmt)
        r = rows[fmt]
        r["ref_bytes"] = (work / f"ref-{fmt}.gguf").stat().st_size
        r["qp_bytes"] = (work / "all" / f"{model.name}-{fmt}.gguf").stat().st_size
        k_ref, k_qp = measure(work / f"ref-{fmt}.gguf"), measure(work / "all" / f"{model.name}-{fmt}.gguf")
        r["ref_kld"], r["qp_kld"] = float(k_ref.mean()), float(k_qp.mean())
        r["qp_minus_ref"], r["qp_minus_ref_se"] = paired(k_qp, k_ref)
        r["qp_none_kld"] = float(measure(work / "none" / f"{model.name}-{fmt}.gguf").mean())
    if not args.no_imatrix:
        from benchmarks.kquants import model_imatrix  # cached across runs: computing it takes minutes

        imx, imx_path = model_imatrix(model, args.model)
        shutil.copy(imx_path, work / "imatrix.gguf")
        means = {n: imx.importance(n) for n in imx.names}
        (work / "im").mkdir()
        run_measured([py, "-m", "quantpress.core.cli", "convert", str(model), "--imatrix", str(work / "imatrix.gguf"),
                      "--out", str(work / "im"), "--json"] + fmt_args)
        for fmt in formats:
            ref_im = work / ("ref-F16.gguf" if fmt == "F16" else f"refim-{fmt}.gguf")
            if fmt != "F16":
                llama_quantize(work / "ref-F16.gguf", ref_im, fmt, imatrix=means)
            k_ref, k_qp = measure(ref_im), measure(work / "im" / f"{model.name}-{fmt}.gguf")
            rows[fmt]["ref_kld_im"], rows[fmt]["qp_kld_im"] = float(k_ref.mean()), float(k_qp.mean())
            rows[fmt]["qp_minus_ref_im"], rows[fmt]["qp_minus_ref_im_se"] = paired(k_qp, k_ref)
            rows[fmt]["qp_bytes_im"] = (work / "im" / f"{model.name}-{fmt}.gguf").stat().st_size
        n_tokens = imx.n_tokens
    else:
        n_tokens = 0
    report = render(rows, formats, t_all, rss_all, largest, args, n_tokens)
    print(report)
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    if args.write:
        write_section(report)




def _kld_cell(value: float, diff: float, se: float) -> str:
    """The KLD, bold when its paired difference to llama.cpp's is below zero by more than 2 SE."""
    return f"**{value:.4f}**" if diff < -2 * se else f"{value:.4f}"


def render(rows: dict[str, dict[str, float]], formats: list[str], t_all: float, rss_all: int, largest: int,
           args: argparse.Namespace, n_tokens: int) -> str:
    mib = 2**20
    nan = float("nan")
    flags = " --off-grid" if args.off_grid else "" if args.model == "demo" else f" --model {args.model}"
    model = ("the demo model with every 2-D weight multiplied by 1 + 0.05·N(0,1) "
             "(`benchmarks/generated_model.py: off_grid_demo`), its own F32 GGUF as the reference" if args.off_grid
             else DESCRIPTIONS[args.model])
    heading = ("### Off the Q4_1 grid" if args.off_grid else "## GGUF conversion" if args.model == "demo"
               else f"### Never-quantized test model '{args.model}'")
    lines = [
        heading, "",
        f"Model: {model}; 2 shared CPU cores. llama.cpp = vendored convert_hf_to_gguf.py → F16 file, then "
        "llama_model_quantize; quantpress = `quantpress convert` (one pass, no intermediate file, policy quantpress). "
        f"KLD = mean KL-divergence to the F32 GGUF per token on held-out text ({args.chunks}×{args.n_ctx} tokens of "
        "resources/eval/heldout.txt, never the calibration text), F32 KV cache. Columns: quantpress = the default "
        "(importance estimated from the weights, no text); quantpress none = `--calibration none` (plain rounding); "
        "Δ = paired mean difference quantpress − llama.cpp over the same tokens ± its standard error; bold = lower "
        "than llama.cpp by more than 2 SE; worse = higher than llama.cpp by more than 2 SE (must stay empty)."
        + ("" if args.no_imatrix else f" imatrix = the default calibration text ({n_tokens} tokens), the same "
           "matrix given to both."), "",
        f"Command: `.venv/bin/python -m benchmarks.convert{flags} --chunks {args.chunks} --n-ctx {args.n_ctx}"
        f"{'' if args.off_grid else ' --time-formats ' + args.time_formats} --write` "
        f"(load average {os.getloadavg()[0]:.1f} at the end, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
        "| format | MiB (both) | KLD llama.cpp | KLD quantpress | Δ ± SE | KLD quantpress none |"
        + ("" if args.no_imatrix else " KLD llama.cpp+imatrix | KLD quantpress+imatrix | Δ ± SE (imatrix) |")
        + " worse |",
        "|---|---|---|---|---|---|" + ("" if args.no_imatrix else "---|---|---|") + "---|",
    ]
    for f in sorted(formats, key=lambda f: rows[f]["qp_bytes"]):
        r = rows[f]
        qp_mib, ref_mib = f"{r['qp_bytes'] / mib:.1f}", f"{r['ref_bytes'] / mib:.1f}"
        size = qp_mib if qp_mib == ref_mib else f"{qp_mib} / {ref_mib}"  # metadata differs by a few bytes
        line = (f"| {f} | {size} | {r['ref_kld']:.4f} | {_kld_cell(r['qp_kld'], r['qp_minus_ref'], r['qp_minus_ref_se'])} | "
                f"{r['qp_minus_ref']:+.4f} ± {r['qp_minus_ref_se']:.4f} | {r['qp_none_kld']:.4f} |")
        if not args.no_imatrix:
            line += (f" {r['ref_kld_im']:.4f} | {_kld_cell(r['qp_kld_im'], r['qp_minus_ref_im'], r['qp_minus_ref_im_se'])}"
                     f" | {r['qp_minus_ref_im']:+.4f} ± {r['qp_minus_ref_im_se']:.4f} |")
        worse = [label for label, key in (("default", ""), ("imatrix", "_im"))
                 if f"qp_minus_ref{key}" in r and r[f"qp_minus_ref{key}"] > 2 * r[f"qp_minus_ref{key}_se"]]
        lines.append(line + f" {', '.join(worse)} |")
    timed = [f for f in formats if "qp_s" in rows[f]]
    if timed:
        lines += ["", "End to end, each pipeline in its own processes (os.wait4); llama.cpp time = its F16 conversion "
                  "+ quantize:", "",
                  "| format | llama.cpp s | quantpress s | speed-up | llama.cpp peak RSS MiB | quantpress peak RSS MiB |",
                  "|---|---|---|---|---|---|"]
        for f in timed:
            r = rows[f]
            lines.append(f"| {f} | {r['ref_s']:.1f} | {r['qp_s']:.1f} | {r['ref_s'] / r['qp_s']:.1f}x | "
                         f"{r.get('ref_rss', nan) / mib:.0f} | {r.get('qp_rss', nan) / mib:.0f} |")
        lines += ["", f"All {len(formats)} formats in one quantpress pass: {t_all:.1f} s, peak RSS {rss_all / mib:.0f} "
                  f"MiB (largest tensor {largest / mib:.0f} MiB; issue bound = 4× + 300 MiB = "
                  f"{(4 * largest) / mib + 300:.0f} MiB)."]
    return "\n".join(lines + [""])


def write_section(section: str) -> None:
    """Replace the section whose heading is ``section``'s first line, up to the next heading of any level
    (hand-written sub-sections between runs survive), or append it."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = section.split("\n", 1)[0] + "\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        ends = [e for e in (text.find("\n## ", start + 3), text.find("\n### ", start + 3)) if e >= 0]
        text = text[:start] + section + (text[min(ends):] if ends else "")
    path.write_text(text)


if __name__ == "__main__":
    main()
