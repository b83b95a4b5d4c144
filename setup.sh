#!/usr/bin/env bash
# One-command setup: a virtual environment in .venv with quantpress installed (editable) and its
# test tools. Choose the torch build with QUANTPRESS_TORCH=cpu|cuda (default: cuda when
# `nvidia-smi` works, else cpu). llama-cpp-python builds from source (about 5 minutes on 2 cores);
# for a CUDA build of it, run with CMAKE_ARGS="-DGGML_CUDA=on" (see README, "GPU notes").
#
# Versions: every package is installed at the version the test suite last passed with
# (constraints.txt, written by scripts/refresh_constraints.py), so this script reproduces the tested
# set on any day. QUANTPRESS_CONSTRAINTS=off installs the newest releases that pyproject.toml's
# ranges allow instead (and upgrades an existing .venv to them): the way to try what is new.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${QUANTPRESS_TORCH_VERSION:-2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip

torch_kind=${QUANTPRESS_TORCH:-auto}
if [ "$torch_kind" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then torch_kind=cuda; else torch_kind=cpu; fi
fi

if "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "torch already installed: $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
elif [ "$torch_kind" = cuda ]; then
  # PyPI's Linux wheels of torch are CUDA builds.
  "${PIP[@]}" install "torch==$TORCH_VERSION"
else
  # The CPU build: PyTorch's CPU index (a few hundred MB instead of several GB). Probe it first:
  # where it is unreachable pip would spend minutes retrying before it falls back to the other
  # configured indexes and local wheel folders.
  cpu_index=()
  if "$VENV/bin/python" -c "import socket; socket.create_connection(('download.pytorch.org', 443), timeout=3).close()" \
      >/dev/null 2>&1; then
    cpu_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
  fi
  "${PIP[@]}" install "torch==$TORCH_VERSION" "${cpu_index[@]}"
fi

case ${QUANTPRESS_CONSTRAINTS:-on} in
  on)
    pins=(--constraint constraints.txt)
    py=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    tested=$(sed -n 's/^# python: //p' constraints.txt)
    if [ "$py" != "$tested" ]; then
      echo "note: the tested versions (constraints.txt) were recorded on Python $tested; on $py pip resolves the newest releases instead"
    fi
    ;;
  off) pins=(--upgrade --upgrade-strategy eager) ;;
  *) echo "QUANTPRESS_CONSTRAINTS must be on or off, not '$QUANTPRESS_CONSTRAINTS'" >&2; exit 2 ;;
esac
# torch stays the build installed above (CPU or CUDA); an upgrade would fetch PyPI's CUDA build.
torch_installed=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')
"${PIP[@]}" install -e ".[test]" "torch==$torch_installed" "${pins[@]}"
echo "${QUANTPRESS_CONSTRAINTS:-on}" > "$VENV/quantpress-constraints"  # tests/test_dependencies.py reads it
echo
echo "quantpress is installed in $VENV. Try: $VENV/bin/quantpress doctor"
# The desktop app needs a few X11 libraries PySide6's wheel does not carry (core/desktop.py): say which.
"$VENV/bin/python" -c 'from quantpress.core.desktop import missing_xcb_libraries, xcb_problem
p = xcb_problem(missing_xcb_libraries())
print("note: " + p if p else "", end="\n" if p else "")'
