"""Run tests/native against an ASan/UBSan build of quantpress.native (without touching the install).

Build once (any folder outside the repo), then run:

    cmake -S native -B /tmp/qp-asan -DQUANTPRESS_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
          -DPython_EXECUTABLE=$PWD/.venv/bin/python && cmake --build /tmp/qp-asan -j
    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
    ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        .venv/bin/python native/run_sanitized_tests.py /tmp/qp-asan [pytest args]

nanobind is a build-only dependency and not in .venv: if cmake cannot find it, install it aside
(`.venv/bin/pip install --target /tmp/nb nanobind`) and prefix both cmake commands with
`PYTHONPATH=/tmp/nb`.

The sanitized module is loaded as ``quantpress.native`` before pytest imports anything, so the
tests exercise it instead of the installed one. (detect_leaks=0: CPython itself "leaks" at exit.)
"""

from __future__ import annotations

import glob
import importlib.util
import sys


def main() -> int:
    build_dir, pytest_args = sys.argv[1], sys.argv[2:] or ["tests/native", "-q", "-p", "no:cacheprovider"]
    (path,) = glob.glob(f"{build_dir}/native*.so") or glob.glob(f"{build_dir}/native*.pyd")
    import quantpress

    spec = importlib.util.spec_from_file_location("quantpress.native", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["quantpress.native"] = module
    quantpress.native = module  # type: ignore[attr-defined]
    print(f"using sanitized {path}", flush=True)
    import pytest

    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main())
