#!/bin/sh
# The whole pytest suite in two processes, one per core: the unit tests (CPU-bound, no
# servers, their PostgreSQL schemas named at random) beside everything else (real
# servers on loopback, where much of the time is waiting). Both outputs are printed, the
# unit tests' after the rest; the exit status fails when either run fails.
# With arguments (make pytest PYTEST_ARGS=...), one run of exactly those.
set -u
BIN=${BIN:-.venv/bin}
if [ $# -gt 0 ]; then
    exec "$BIN/pytest" -q "$@"
fi
log=$(mktemp "${TMPDIR:-/tmp}/cx-unit-tests-XXXXXX")
"$BIN/pytest" -q -p no:cacheprovider tests/unit > "$log" 2>&1 &
unit=$!
# Only the run started here is stopped, by its pid, if this script is interrupted.
trap 'kill "$unit" 2>/dev/null; rm -f "$log"; exit 130' INT TERM
"$BIN/pytest" -q --ignore=tests/unit
rest=$?
wait "$unit"
unit_status=$?
trap - INT TERM
echo "--- tests/unit (run beside the rest)"
cat "$log"
rm -f "$log"
[ "$rest" -eq 0 ] && [ "$unit_status" -eq 0 ]
