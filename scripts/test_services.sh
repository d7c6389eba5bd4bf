#!/usr/bin/env bash
# `deno task test:services`: the tests that need real services (tests/services/: the conformance
# suites on PostgreSQL and S3, the garbage-collection races, end to end on both). Starts the
# services with scripts/services.sh in a temporary folder unless their settings are in the
# environment already, runs the tests (which then must run, not skip), and stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."
started=""
if [[ -z ${CLOUDSYNC_TEST_PG_URL:-} || -z ${CLOUDSYNC_TEST_S3_URL:-} ]]; then
  dir=$(mktemp -d /tmp/cloudsync-services-XXXXXX)
  rmdir "$dir" # services.sh creates it
  trap 'scripts/services.sh stop "$dir"' EXIT
  scripts/services.sh start "$dir" >/dev/null
  started=$dir
  # shellcheck disable=SC1091
  source "$dir/env.sh"
fi
echo "test:services: PostgreSQL and S3 at ${CLOUDSYNC_TEST_PG_URL##*@}, ${CLOUDSYNC_TEST_S3_URL#*endpoint=}${started:+ (started in $started)}"
CLOUDSYNC_REQUIRE_SERVICES=1 deno test --allow-net=127.0.0.1 --allow-read --allow-write --allow-env \
  --allow-sys --allow-run --parallel --sanitize-resources --sanitize-ops tests/services/ "$@"
