#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU (CUDA 13, CuPy and PyTorch installed, no
# network), build and install fastnn from this working tree, run the GPU tests (every
# kernel test and the cpp-vs-cupy parity suite on the "cupy" backend) and a short
# benchmark against torch CUDA, and print one table. Budget: under 8 minutes.
#
#   bash bench/gpu_check.sh [--quick]       # from the repository root
#
# Offline installs: wheels missing on the machine (scipy-openblas32, which the C++
# backend links) are taken from .whl/ when present. Output also goes to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
t0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c "import sys, cupy, torch, numpy; print('python', sys.version.split()[0], '| cupy', cupy.__version__, \
'| torch', torch.__version__, '| numpy', numpy.__version__, '| CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())"

step "install fastnn from the working tree"
if ! $PY -c "import scipy_openblas32" 2>/dev/null; then
  ls .whl/scipy_openblas32-*.whl >/dev/null 2>&1 || { echo "scipy-openblas32 missing and no wheel in .whl/"; exit 1; }
  $PY -m pip install -q --no-index --no-deps .whl/scipy_openblas32-*.whl
fi
if ! $PY -m pip install -q --no-build-isolation --no-deps -e . > "$OUT/install.log" 2>&1; then
  tail -15 "$OUT/install.log"
  echo "pip install -e failed (old build tools here?); building in place instead"
  $PY setup.py -q build_ext --inplace >> "$OUT/install.log" 2>&1 || { tail -30 "$OUT/install.log"; exit 1; }
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -c "import fastnn; print('backends:', fastnn.backends())"
$PY -c "import fastnn, sys; sys.exit(0 if fastnn.backends()['cupy'] == 'ok' else 1)"

step "NVRTC program of the installed package compiles through CuPy (first use, then cached)"
$PY - <<'EOF'
import time, cupy, torch, fastnn
t = time.perf_counter()
for dt in (torch.float32, torch.float64):
    x = torch.linspace(-3, 3, 1001, dtype=dt, device="cuda")
    y = fastnn.activation_forward(cupy.from_dlpack(x), "gelu")
    err = (torch.from_dlpack(y) - torch.nn.functional.gelu(x.double())).abs().max().item()
    print(dt, "gelu vs torch: max abs err", err)
print(f"NVRTC compile + first calls: {time.perf_counter() - t:.2f}s")
EOF

step "GPU tests: the kernel suite and the parity suite on the cupy backend"
TESTS=${FASTNN_GPU_TESTS:-tests/test_activations.py tests/test_losses.py tests/test_dense.py tests/test_dense_ce.py \
  tests/test_precision.py tests/test_parity.py tests/test_errors.py tests/test_torch_cuda.py}
set +e
FASTNN_TEST_CUDA_EMU=0 timeout 270 $PY -m pytest -q --maxfail=40 -p no:cacheprovider -n 8 $TESTS \
  -k "cupy or cuda" 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
rc=${PIPESTATUS[0]}
set -e

if [ "${FASTNN_GPU_SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  for tool in racecheck memcheck synccheck; do
    step "compute-sanitizer --tool $tool on every kernel (bench/gpu_sanitize.py)"
    set +e
    timeout 90 compute-sanitizer --tool $tool --error-exitcode 9 $PY bench/gpu_sanitize.py 2>&1 | tail -6
    s=${PIPESTATUS[0]}
    set -e
    echo "compute-sanitizer $tool exit status: $s"
    [ "$s" = 0 ] || rc=1
  done
fi
echo "GPU tests exit status: $rc"

step "GPU benchmark (fastnn cupy vs torch CUDA)"
timeout 150 $PY bench/gpu_bench.py --csv "$OUT/gpu_bench.csv" ${1:-} 2>&1 | tee "$OUT/gpu_bench.log"

step "done in $(( $(date +%s) - t0 ))s (GPU tests exit status $rc)"
exit $rc
