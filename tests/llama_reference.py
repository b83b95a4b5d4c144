"""llama.cpp's own HF -> GGUF converter (convert_hf_to_gguf.py from the llama-cpp-python source
distribution of the installed version), the reference quantpress's tensor names, shapes and
metadata keys are checked against. benchmarks/convert.py fetches and unpacks the sdist (PyPI);
this runs its converter in a child process with the vendored gguf-py first on the path.

    from llama_reference import reference_gguf       # tests/ is on sys.path under pytest
    ref = reference_gguf(hf_folder, tmp_path / "ref.gguf")
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vendored_llama_cpp() -> Path:
    """The vendor/llama.cpp folder of the unpacked sdist (fetched once, cached in the temp dir)."""
    code = "from benchmarks.convert import SDIST_DIR, vendor_dir; print(vendor_dir(SDIST_DIR))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=False)
    if out.returncode:
        raise RuntimeError(f"cannot get llama-cpp-python's source distribution: {out.stderr[-1500:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def reference_gguf(folder: Path, out: Path, outtype: str = "f32", *, mmproj: bool = False) -> Path:
    """Convert the HF ``folder`` with llama.cpp's converter to ``out`` (``mmproj``: the vision projector
    file its ``--mmproj`` writes, instead of the text model)."""
    vendor = vendored_llama_cpp()
    env = {**os.environ, "PYTHONPATH": str(vendor / "gguf-py"), "NO_LOCAL_GGUF": ""}
    cmd = [sys.executable, str(vendor / "convert_hf_to_gguf.py"), str(folder), "--outtype", outtype,
           "--outfile", str(out)] + (["--mmproj"] if mmproj else [])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    if res.returncode:
        raise RuntimeError(f"llama.cpp's converter failed on {folder.name}: {res.stderr[-3000:]}")
    return out
