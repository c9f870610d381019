#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (the README's test command).
# On a machine with no GPU the [cuda] tests report themselves as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure
