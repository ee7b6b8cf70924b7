#!/usr/bin/env bash
# The README's test command: installs what it needs, builds (Release) and runs every test, then builds the
# same suite with AddressSanitizer + UndefinedBehaviorSanitizer and runs it again; on an AVX-512 machine also
# the kernel, parity and determinism tests of an AVX2 build.
#   scripts/test.sh                 everything (what CI runs)
#   ELM_SKIP_SANITIZE=1 scripts/test.sh   no sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --neuron --peer
jobs=$(nproc)

echo "== Release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

if grep -qw avx512f /proc/cpuinfo 2>/dev/null && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  # The Release build above runs 512-bit vectors here; an AVX2 machine runs 256-bit ones with 16 registers
  # (other register blocks), and GCC's tuning for AMD Zen treats 256-bit FMA chains differently (see
  # CMakeLists.txt). This builds that case (AVX2 instructions, Zen 3 tuning) and runs the kernel, parity and
  # determinism tests on it.
  echo "== AVX2 build (256-bit vectors, Zen 3 tuning): kernel, parity and determinism tests"
  cmake -S . -B build-avx2 -DCMAKE_BUILD_TYPE=Release -DELM_NATIVE=OFF -DELM_BUILD_BENCH=OFF \
        -DELM_BUILD_PYTHON=OFF "-DCMAKE_CXX_FLAGS=-march=x86-64-v3 -mtune=znver3" >/dev/null
  cmake --build build-avx2 -j"$jobs" --target elm_unit_tests elm_parity
  ctest --test-dir build-avx2 --output-on-failure -j"$jobs" \
    -E "^(clang_format|fuzz_readers|neuronio_eval_protocol|neuronio_train|neuron_simulator|peer_pytorch)$|^randomised_configs/|^cli\."
fi

if [ "${ELM_SKIP_SANITIZE:-0}" != 1 ]; then
  # The Python module is left out here: the Python interpreter itself is not ASan-instrumented.
  echo "== ASan+UBSan build and tests"
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELM_SANITIZE=ON -DELM_BUILD_BENCH=OFF \
        -DELM_BUILD_PYTHON=OFF >/dev/null
  cmake --build build-sanitize -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-sanitize --output-on-failure -j"$jobs"
fi
