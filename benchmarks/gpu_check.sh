#!/usr/bin/env bash
# The GPU check in one command, on a fresh Linux x86_64 machine with one CUDA GPU, from a copy of the repository:
#
#   bash benchmarks/gpu_check.sh
#
# 1. Installs the packages into $VENV (default .venv, as in the README): torch==2.13.0 first (on Linux x86_64 the
#    default PyPI wheel is the CUDA build), then pico-llm with its pinned dependencies (pip install -e .).
#    PICOLLM_SKIP_INSTALL=1 skips this and uses $PYTHON (default python3) as it is. On a node without internet
#    whose Python already has torch (a cluster module, a GPU image), WHEELS=<folder of wheels> skips it too and
#    installs those wheels (pip download'ed elsewhere: docs/gpu.md) into a folder put on PYTHONPATH, offline.
# 2. Runs `python -m benchmarks --only gpu`: at most 8 minutes, its start-up included. It writes gpu.json and
#    benchmarks.md to $OUT if set, else results/benchmarks, and beside them gpu_check.log (what it printed) and
#    nvidia-smi.txt. A hard stop at 9 minutes catches a hang the benchmark's own deadline cannot.
# Further arguments go to python -m benchmarks: `--quick --device cpu` checks the harness on a CPU in about a minute.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-results/benchmarks}"
mkdir -p "$out"

if [[ -n "${WHEELS:-}" ]]; then
    site="${TMPDIR:-/tmp}/picollm-gpu-site"
    "${PYTHON:-python3}" -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target "$site" \
        "$WHEELS"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
elif [[ "${PICOLLM_SKIP_INSTALL:-}" != 1 ]]; then
    base="$(command -v python3.11 || command -v python3.12 || command -v python3)"  # pyproject: 3.11 or 3.12
    venv="${VENV:-.venv}"
    "$base" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet torch==2.13.0  # first and pinned, so nothing resolves another torch
    "$venv/bin/pip" install --quiet -e .
    PYTHON="$venv/bin/python"
fi
python="${PYTHON:-python3}"

# GPT-2's BPE files score the synthetic tokens in bits per byte; an offline machine finds them in a shared cache.
if [[ -z "${TIKTOKEN_CACHE_DIR:-}" ]]; then
    for dir in ../shared/tiktoken-cache shared/tiktoken-cache; do
        if [[ -d "$dir" ]]; then
            export TIKTOKEN_CACHE_DIR="$PWD/$dir"
            break
        fi
    done
fi
# a Python that lacks a package the check imports fails here, in one line, not in every check
if ! missing="$(PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" "$python" -c "import benchmarks.gpu, picollm.train" 2>&1)"; then
    echo "gpu_check: $python cannot run the check: $(tail -n 1 <<<"$missing"); install pico-llm's packages (pip install -e .), or offline pass WHEELS=<folder> (docs/gpu.md)" >&2
    exit 1
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
    # an existing venv may hold torch's CPU build, which `pip install torch==2.13.0` accepts as installed
    if "$python" -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then
        echo "gpu_check: $python has torch's CPU build; set VENV to a new folder (or delete .venv) and rerun" >&2
        exit 1
    fi
fi

set +e
timeout --kill-after=10 540 "$python" -m benchmarks --only gpu --out "$out" --threads "${THREADS:-$(( $(nproc) < 8 ? $(nproc) : 8 ))}" "$@" 2>&1 |
    tee "$out/gpu_check.log"
status=${PIPESTATUS[0]}
set -e
exit "$status"
