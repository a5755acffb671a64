#!/usr/bin/env bash
# The zoo's GPU check in one command (< 8 min on one H100/H200): prints ONE summary table and, when $OUT is set,
# writes it there (device_check.txt, device_check.json, device_check.log). See benchmarks/device_check.py for what it checks.
#   bash benchmarks/device_check.sh [--budget SECONDS] [--dry-run] [...]      # extra arguments go to device_check.py
# Packages missing on the machine (torch-fidelity for the Inception section) are installed from wheels in .whl/ when
# that folder exists (machines without network access).
set -o pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! python3 -c "import torch_fidelity" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/zoo-site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/zoo-site"
fi
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    python3 benchmarks/device_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/device_check.log"
else
    python3 benchmarks/device_check.py "$@"
fi
