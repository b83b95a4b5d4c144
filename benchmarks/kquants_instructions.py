"""Instructions per weight of the native k-quant kernels vs ggml's, counted by callgrind.

Wall-clock throughput on a shared machine moves with the load; callgrind counts the instructions a
call executes, whatever else runs. It is not time (one AVX2 instruction does 8 lanes of work, so
the instruction ratio overstates the speed ratio), but it is a load-independent check of a change.

    cmake -S native -B /tmp/qp-g -DCMAKE_BUILD_TYPE=RelWithDebInfo \\
          "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O3 -g -DNDEBUG" -DPython_EXECUTABLE=$PWD/.venv/bin/python \\
          && cmake --build /tmp/qp-g -j                    # same -O3 code as the wheel, with symbols
    .venv/bin/python -m benchmarks.kquants_instructions /tmp/qp-g [--types Q4_K,Q6_K] [--rows 32]

(nanobind for the cmake step: see native/run_sanitized_tests.py.)
Each (type, engine, importance) runs in its own valgrind process; only the kernel is counted
(--toggle-collect on qp::kq_avx2::quantize_row_* resp. ggml's quantize_<type>), one thread, on the
first ``--rows`` rows of the generated 1024 x 2048 matrix of benchmarks.kquants.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import glob, importlib.util, sys
import quantpress
spec = importlib.util.spec_from_file_location("quantpress.native", glob.glob(sys.argv[1] + "/native*.so")[0])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
sys.modules["quantpress.native"] = mod; quantpress.native = mod
from benchmarks.kquants import generated_model, importance_for
from quantpress.core.quant.ggml_ref import ggml_init, ggml_quantize
qtype, engine, rows, with_imp = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
x = next(generated_model(seed=1))[1][:rows]
imp = importance_for(x.shape[1]) if with_imp else None
ggml_init(qtype)
mod.quantize(x, qtype, imp, threads=1) if engine == "native" else ggml_quantize(x, qtype, imp)
"""


def count(build: Path, qtype: str, engine: str, rows: int, with_imp: bool) -> int:
    toggle = "qp::kq_avx2::quantize_row_*" if engine == "native" else f"quantize_q{qtype[1:]}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--toggle-collect={toggle}",
                        sys.executable, "-c", CHILD, str(build), qtype, engine, str(rows), "1" if with_imp else "0"],
                       check=True, capture_output=True, cwd=Path(__file__).resolve().parent.parent)
        totals = re.search(r"^summary:\s*(\d+)", out.read_text(), re.M)
    if not totals or not int(totals.group(1)):
        raise RuntimeError(f"callgrind counted nothing for {qtype}/{engine}: is {build} a build with symbols?")
    return int(totals.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", type=Path, help="cmake build folder of native/ with symbols (see above)")
    ap.add_argument("--types", default="Q2_K,Q3_K,Q4_K,Q5_K,Q6_K")
    ap.add_argument("--rows", type=int, default=32)
    args = ap.parse_args()
    n = args.rows * 2048
    print("| type | importance | native instr/weight | ggml instr/weight | ggml / native |")
    print("|---|---|---|---|---|")
    for qtype in args.types.split(","):
        for with_imp in (False, True):
            ours, ref = (count(args.build, qtype, e, args.rows, with_imp) / n for e in ("native", "ggml"))
            print(f"| {qtype} | {'yes' if with_imp else 'no'} | {ours:.0f} | {ref:.0f} | {ref / ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
