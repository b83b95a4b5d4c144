#!/usr/bin/env bash
# One-command setup: a virtual environment in .venv with quantpress installed (editable) and its
# test tools. Choose the torch build with QUANTPRESS_TORCH=cpu|cuda (default: cuda when
# `nvidia-smi` works, else cpu). llama-cpp-python builds from source (about 5 minutes on 2 cores);
# for a CUDA build of it, run with CMAKE_ARGS="-DGGML_CUDA=on" (see README, "GPU notes").
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

"${PIP[@]}" install -e ".[test]"
echo
echo "quantpress is installed in $VENV. Try: $VENV/bin/quantpress doctor"
