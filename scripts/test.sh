#!/usr/bin/env bash
# evstore's full test suite: installs dependencies, builds, installs, then
# runs the pg_regress, isolation and TAP suites against throwaway servers
# started by the suites themselves.  Prints "N passed, N failed" last and
# exits non-zero on any failure.
#
#   ./scripts/test.sh            # everything
#   SUITES="regress" ./scripts/test.sh   # only some of: regress isolation tap
#   KEEP_WORK=1 ./scripts/test.sh        # keep the build copy (results/ etc.)
#   PG_CONFIG=/opt/pg17/bin/pg_config ./scripts/test.sh   # another PostgreSQL
#                                        # (or PG_BIN=/opt/pg17/bin); default:
#                                        # Debian's PostgreSQL 15
set -uo pipefail

if [ "$(id -u)" -ne 0 ]; then
    exec sudo -E "$0" "$@"
fi

here=$(cd "$(dirname "$0")/.." && pwd)
SUITES=${SUITES:-"regress isolation tap"}

bash "$here/scripts/setup-debian.sh" || { echo "0 passed, 1 failed"; exit 1; }
if [ -n "${PG_BIN:-}" ] && [ -z "${PG_CONFIG:-}" ]; then PG_CONFIG=$PG_BIN/pg_config; fi
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || { echo "no pg_config at $PG_CONFIG"; echo "0 passed, 1 failed"; exit 1; }
PG_BIN=$("$PG_CONFIG" --bindir)
export PG_CONFIG PATH="$PG_BIN:$PATH"
echo "testing against $("$PG_CONFIG" --version) ($PG_CONFIG)"

# One test run at a time per machine: "make install" writes shared paths.
exec 9>/tmp/evstore-install.lock
flock 9

# Servers must not run as root: build and test in a copy owned by postgres.
work=$(mktemp -d /tmp/evstore-test.XXXXXX)
cp -a "$here"/. "$work"/
rm -rf "$work"/.git
# output_plugin_libraries exists only in releases with the CVE-2026-6471
# fix; a server without it refuses to start on an unknown setting
# (no grep -q: under pipefail its early exit can kill postgres with SIGPIPE
# and make the check fail at random)
if ! "$PG_BIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
    sed -i '/^output_plugin_libraries/d' "$work/test/evstore.conf"
    echo "this server has no output_plugin_libraries: left out of test/evstore.conf"
fi
chown -R postgres:postgres "$work"
# KEEP_WORK=1 keeps the copy (results/, output_iso/, tmp_check/) for inspection
if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir: $work"; else trap 'rm -rf "$work"' EXIT; fi

cd "$work"
make -s clean >/dev/null 2>&1 || true
if ! runuser -u postgres -- make -s PG_CONFIG="$PG_CONFIG" 2>&1 | tee build.log | grep -E "warning|error"; then :; fi
if [ ! -f evstore.so ]; then
    cat build.log; echo "0 passed, 1 failed"; exit 1
fi
make -s install PG_CONFIG="$PG_CONFIG" >/dev/null || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0; failed=0; status=0
count_pg_regress() {   # counts passed/failed tests of pg_regress output:
    # "test x ... ok" / "... FAILED" up to 15, "ok N - x" / "not ok N - x" from 16
    local log=$1
    local ok fail
    ok=$(grep -cE '^(test| ) *[^ ].* \.\.\. ok|^ok [0-9]+ ' "$log" || true)
    fail=$(grep -cE '\.\.\. FAILED|\.\.\. failed|^not ok [0-9]+ ' "$log" || true)
    passed=$((passed + ok)); failed=$((failed + fail))
}

for suite in $SUITES; do
    echo "=== $suite"
    case $suite in
        regress)   target=test-regress ;;
        isolation) target=test-isolation ;;
        tap)       target=test-tap ;;
        *) echo "unknown suite $suite"; exit 2 ;;
    esac
    runuser -u postgres -- make -s PG_CONFIG="$PG_CONFIG" "$target" > "$suite.log" 2>&1
    rc=$?
    cat "$suite.log"
    if [ "$suite" = tap ]; then
        ok=$(grep -E '^ok ' -c tmp_check/log/*.log 2>/dev/null | awk -F: '{s+=$2} END {print s+0}')
        t=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$suite.log" | tail -1)
        fsub=$(sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' "$suite.log" | awk '{s+=$1} END {print s+0}')
        t=${t:-0}
        passed=$((passed + t - fsub)); failed=$((failed + fsub))
        if [ $rc -ne 0 ] && [ "$fsub" -eq 0 ]; then failed=$((failed + 1)); fi
    else
        count_pg_regress "$suite.log"
        if [ $rc -ne 0 ]; then
            for d in $(find . -name regression.diffs); do echo "--- $d"; cat "$d"; done
            [ "$(grep -cE '\.\.\. (FAILED|failed)|^not ok [0-9]+ ' "$suite.log")" -eq 0 ] && failed=$((failed + 1))
        fi
    fi
    [ $rc -ne 0 ] && status=1
done

echo "$passed passed, $failed failed"
exit $status
