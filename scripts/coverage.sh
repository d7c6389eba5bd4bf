#!/usr/bin/env bash
# In-process line coverage of the client's disk-writing modules (the code that writes users'
# files), from the unit and simulator tests alone (everything under tests/ but tests/e2e/ and
# tests/services/, which start processes or need real services). Runs those tests with
# `--coverage` into a fresh cov/, prints `deno coverage`'s table for the modules below and their
# combined line coverage, and exits non-zero when the combined figure is below $COVERAGE_MIN
# (default 85).
#
#   deno task coverage            # or: bash scripts/coverage.sh
#   COVERAGE_MIN=90 deno task coverage
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${COVERAGE_MIN:-85}
MODULES='lib/client/((executor|placer|staging|downloader|uploader|chunk_source|transfer|push|base_writer|scanner|engine)|fs/[a-z_]+)\.ts$'

rm -rf cov
deno test --allow-net=127.0.0.1 --allow-read --allow-write --allow-env --allow-sys --allow-run \
  --parallel --sanitize-resources --sanitize-ops --coverage=cov/ --coverage-raw-data-only \
  --ignore=tests/e2e/,tests/services/ tests/

deno coverage cov/ --include="$MODULES"
deno coverage cov/ --include="$MODULES" --lcov --output=cov/lcov.info
# Lines found (LF) and hit (LH) of every module in the lcov report, summed.
awk -F: -v min="$MIN" '
  /^LF:/ { found += $2 }
  /^LH:/ { hit += $2 }
  END {
    if (found == 0) { print "coverage: no lines found (no module matched?)"; exit 1 }
    pct = 100 * hit / found
    printf "Combined line coverage of the disk-writing modules: %.1f%% (%d of %d lines); at least %s%% wanted\n", pct, hit, found, min
    if (pct < min) { print "Cannot pass the coverage check: below the minimum; add tests for the uncovered lines (deno coverage cov/ --detailed)"; exit 1 }
  }' cov/lcov.info
