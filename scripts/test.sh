#!/usr/bin/env bash
# The README's test command: installs what it needs, builds (Release) and runs every test, then builds the
# same suite with AddressSanitizer + UndefinedBehaviorSanitizer and runs it again.
#   scripts/test.sh                 everything (what CI runs)
#   ELM_SKIP_SANITIZE=1 scripts/test.sh   only the Release build
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --neuron --peer
jobs=$(nproc)

echo "== Release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

if [ "${ELM_SKIP_SANITIZE:-0}" != 1 ]; then
  # The Python module is left out here: the Python interpreter itself is not ASan-instrumented.
  echo "== ASan+UBSan build and tests"
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELM_SANITIZE=ON -DELM_BUILD_BENCH=OFF \
        -DELM_BUILD_PYTHON=OFF >/dev/null
  cmake --build build-sanitize -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-sanitize --output-on-failure -j"$jobs"
fi
