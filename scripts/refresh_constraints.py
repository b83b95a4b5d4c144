"""Record the installed package set as constraints.txt, the versions setup.sh installs.

Run it from an environment in which the whole test suite has just passed, typically:

    QUANTPRESS_CONSTRAINTS=off ./setup.sh && .venv/bin/python -m pytest && .venv/bin/python scripts/refresh_constraints.py

Every installed distribution is pinned (quantpress itself, pip's own tools and torch excepted: torch
is chosen by setup.sh, CPU or CUDA build, and its local version tag differs between them). Each pin
carries a ``python_version`` marker for the interpreter it was tested on, so a user on another
Python gets the newest releases rather than versions that may not exist for it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

# Set by setup.sh or the interpreter itself, not by the tested dependency set.
UNPINNED = {"quantpress", "pip", "setuptools", "wheel", "torch"}
# torch's own CUDA runtime wheels come and go with the torch build (nvidia-ml-py, NVML's bindings,
# is quantpress's own dependency and stays pinned).
UNPINNED_PREFIXES = ("nvidia-", "cuda-", "triton")
PINNED_ANYWAY = {"nvidia-ml-py"}


def _normalise(name: str) -> str:
    """PEP 503 name normalisation (``PySide6_Essentials`` and ``pyside6-essentials`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_lines(freeze: str, python: str) -> list[str]:
    """``name==version; python_version == "X.Y"`` for each pinnable line of ``pip freeze`` output."""
    lines = []
    for raw in freeze.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-e ")) or "==" not in line:
            continue
        name, version = line.split("==", 1)
        key = _normalise(name)
        if key in UNPINNED or (key.startswith(UNPINNED_PREFIXES) and key not in PINNED_ANYWAY):
            continue
        lines.append(f'{name}=={version}; python_version == "{python}"')
    return sorted(lines, key=str.lower)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "constraints.txt")
    args = parser.parse_args(argv)
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            check=True, capture_output=True, text=True).stdout
    python = "{}.{}".format(*sys.version_info[:2])
    header = [
        "# The package set the test suite passed with; setup.sh installs exactly these versions.",
        "# Refresh: QUANTPRESS_CONSTRAINTS=off ./setup.sh && .venv/bin/python -m pytest && "
        ".venv/bin/python scripts/refresh_constraints.py",
        f"# python: {python}",
    ]
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text("\n".join(header + pinned_lines(freeze, python)) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
