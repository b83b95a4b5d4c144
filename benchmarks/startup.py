"""Desktop app startup: time from a fresh interpreter to the main window shown (target < 3 s), and
proof that torch / transformers / llama_cpp are not imported at startup.

Run: .venv/bin/python -m benchmarks.startup [--runs N]

Compared in the same run with (a) a bare PySide6 QMainWindow (the floor Qt itself costs) and
(b) what eager imports of the heavy libraries would add (torch, transformers, llama_cpp).
Each measurement is a fresh subprocess, offscreen; the median of N runs is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HEAVY = ("torch", "transformers", "llama_cpp")

QUANTPRESS = r"""
import time, sys, json
t0 = time.perf_counter()
from quantpress.app.main import make_app
app = make_app()
from quantpress.app.main_window import MainWindow
w = MainWindow(); w.show(); app.processEvents()
shown = time.perf_counter() - t0
heavy = [m for m in HEAVY if m in sys.modules]
w.state.shutdown()
print(json.dumps({"seconds": shown, "heavy": heavy}))
"""

BARE_QT = r"""
import time, json
t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication([])
w = QMainWindow(); w.show(); app.processEvents()
print(json.dumps({"seconds": time.perf_counter() - t0, "heavy": []}))
"""

HEAVY_IMPORTS = r"""
import time, json
t0 = time.perf_counter()
import torch, transformers, llama_cpp
print(json.dumps({"seconds": time.perf_counter() - t0, "heavy": []}))
"""


def run(code: str) -> dict[str, object]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    prelude = f"HEAVY = {HEAVY!r}\n"
    out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env,
                         check=True, timeout=300)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    heavy_seen: set[str] = set()
    for name, code in (("bare PySide6 QMainWindow (floor)", BARE_QT), ("quantpress main window", QUANTPRESS),
                       ("import torch+transformers+llama_cpp", HEAVY_IMPORTS)):
        times = []
        for _ in range(args.runs if code is not HEAVY_IMPORTS else max(1, args.runs // 2)):
            res = run(code)
            times.append(float(res["seconds"]))  # type: ignore[arg-type]
            heavy_seen.update(res["heavy"])  # type: ignore[arg-type]
        rows.append((name, statistics.median(times), min(times), max(times)))
    print(f"{'what':40s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for name, med, lo, hi in rows:
        print(f"{name:40s} {med:9.2f} {lo:7.2f} {hi:7.2f}")
    qp = rows[1][1]
    print(f"\nquantpress window shown in {qp:.2f} s (target < 3 s): {'OK' if qp < 3 else 'TOO SLOW'}")
    print(f"heavy modules imported at startup: {sorted(heavy_seen) or 'none'}")
    print(f"eager heavy imports would add about {rows[2][1]:.2f} s")
    return 0 if qp < 3 and not heavy_seen else 1


if __name__ == "__main__":
    sys.exit(main())
