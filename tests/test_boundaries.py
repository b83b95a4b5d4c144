"""core/ must import and run without Qt: checked in a fresh interpreter."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import quantpress.core


def _core_modules() -> list[str]:
    # `__main__` modules run the CLI when imported (with no arguments: the GUI), so they are skipped.
    names = [m.name for m in pkgutil.walk_packages(quantpress.core.__path__, "quantpress.core.")]
    return [n for n in names if not n.endswith(".__main__")]


def test_core_imports_without_qt() -> None:
    modules = _core_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6'))\n"
        "assert not bad, bad\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'llama_cpp') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr
    # Heavy libraries are imported inside the functions that need them, so inspect/estimate stay fast.
    assert out.stdout.strip() == "", f"core imports heavy libraries at module level: {out.stdout}"


def test_only_quantpress_at_top_level() -> None:
    from importlib import metadata

    files = metadata.files("quantpress") or []
    tops = {f.parts[0] for f in files if f.parts and not f.parts[0].endswith((".dist-info", ".pth"))}
    # An editable install adds its redirect hook (and its bytecode cache); a wheel has only quantpress
    # (tests/test_packaging.py checks the real wheel).
    tops = {t for t in tops if not t.startswith(("__editable__", "_editable_", "__pycache__"))}
    assert tops <= {"quantpress", ".."}, tops
