#!/usr/bin/env bash
# evstore's full test suite: installs dependencies, builds, installs, then
# runs the pg_regress, isolation and TAP suites against throwaway servers
# started by the suites themselves.  Prints "N passed, N failed" last and
# exits non-zero on any failure.
#
#   ./scripts/test.sh            # everything
#   SUITES="regress" ./scripts/test.sh   # only some of: regress isolation tap examples demo
#   KEEP_WORK=1 ./scripts/test.sh        # keep the build copy (results/ etc.)
#   PG_CONFIG=/opt/pg17/bin/pg_config ./scripts/test.sh   # another PostgreSQL
#                                        # (or PG_BIN=/opt/pg17/bin); default:
#                                        # Debian's PostgreSQL 15
set -uo pipefail

if [ "$(id -u)" -ne 0 ]; then
    exec sudo -E "$0" "$@"
fi

here=$(cd "$(dirname "$0")/.." && pwd)
SUITES=${SUITES:-"regress isolation tap examples demo"}

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
# (no grep -q: under pipefail its early exit can fail the pipeline with SIGPIPE)
if ! "$PG_BIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
    sed -i '/^output_plugin_libraries/d' "$work/test/evstore.conf"
    echo "this server has no output_plugin_libraries: left out of test/evstore.conf"
fi
chown -R postgres:postgres "$work"
# KEEP_WORK=1 keeps the copy (results/, output_iso/, tmp_check/) for inspection
if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir: $work"; fi
# A second extension, for the tests only (t/006_core_other_extension.pl):
# installed for this run (under the lock) and removed at exit.
ext_dir=$("$PG_CONFIG" --sharedir)/extension
other_ext="evstore_test_other.control evstore_test_other--1.0.sql"
cleanup() {
    for f in $other_ext; do rm -f "$ext_dir/$f"; done
    if [ "${KEEP_WORK:-0}" != 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

cd "$work"
make -s clean >/dev/null 2>&1 || true
if ! runuser -u postgres -- make -s PG_CONFIG="$PG_CONFIG" 2>&1 | tee build.log | grep -E "warning|error"; then :; fi
if [ ! -f evstore.so ]; then
    cat build.log; echo "0 passed, 1 failed"; exit 1
fi
make -s install PG_CONFIG="$PG_CONFIG" >/dev/null || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }
for f in $other_ext; do install -m 644 "test/extension/$f" "$ext_dir/$f"; done

passed=0; failed=0; status=0
count_pg_regress() {   # counts passed/failed tests of pg_regress output:
    # "test x ... ok" / "... FAILED" up to 15, "ok N - x" / "not ok N - x" from 16
    local log=$1
    local ok fail
    ok=$(grep -cE '^(test| ) *[^ ].* \.\.\. ok|^ok [0-9]+ ' "$log" || true)
    fail=$(grep -cE '\.\.\. FAILED|\.\.\. failed|^not ok [0-9]+ ' "$log" || true)
    passed=$((passed + ok)); failed=$((failed + fail))
}

# suite "demo": scripts/demo.sh runs against the evstore just installed, and
# each step of its walkthrough is checked in its output (one test per step)
demo_check() {   # demo_check NAME EXTENDED-REGEX...: every regex in demo.log
    local name=$1 re; shift
    for re in "$@"; do
        if ! grep -qE -- "$re" demo.log; then
            echo "not ok - demo: $name (missing: $re)"; failed=$((failed + 1)); status=1; return
        fi
    done
    echo "ok - demo: $name"; passed=$((passed + 1))
}
run_demo() {
    EVSTORE_INSTALLED=1 DEMO_PORT=5496 bash ./scripts/demo.sh > demo.log 2>&1
    local rc=$?
    cat demo.log
    echo "--- demo checks"
    demo_check "setup: projection, subscription, feed slot" \
        '^ lead_search \| handler \| public\.project_lead' '^ lead-mailer +\| +0 \| \{lead\}' '^ lead_feed +\| evstore +\| logical'
    demo_check "appends with expected versions and a conflict (ES001)" \
        'wrong expected version for stream "lead-12": expected 2, actual 3' '=> SQLSTATE ES001' \
        '^ +4 \| +5$' '^ lead-12 \| +6$'
    demo_check "idempotent retry returns the original result" \
        '^ +5 \| +6$' "order-submitted events stored" '^ +1$'
    [ "$(grep -cE '^ +5 \| +6$' demo.log)" -eq 2 ] || { echo "not ok - demo: retry printed the original result twice"; failed=$((failed + 1)); status=1; }
    demo_check "time travel: as of version 3, as of a position" \
        '^ +0 \| 555-2951$' '^ +3 \| 555-8101$' '^ +3 \| contact-details-updated$' '^ lead-12 +\| +2 \| +3$'
    demo_check "read model kept by the projection" \
        '^   LastNames: \{David,Davis\}$' '^   PhoneNumbers: \{555-2951,555-8101\}$' '^   Status: converted$' '^   Version: 6$'
    demo_check "read model rolled back with the append" \
        '^ disqualified +\| +7$' '^ converted +\| +6 \| +6$'
    demo_check "log feed through pg_recvlogical" \
        '^   pos 1 +lead-12 +v0 lead-initialized' '^   pos 7 +lead-12 +v6 payment-confirmed' \
        'the rolled-back lead-disqualified is in the feed: no' '^   7 lines;'
    [ "$(grep -cE '^   pos [0-9]+ ' demo.log)" -eq 7 ] || { echo "not ok - demo: the feed has exactly 7 events"; failed=$((failed + 1)); status=1; }
    demo_check "subscription consumer with mark_processed" \
        '^ +7 \| +7 \| +0 \| +7$' '^ +7 \| +0 \| +7 \| +7$' '^ +7 \| +7$' '^ lead-mailer \| +0 \| +7 \| +0 \| mailer-1$'
    demo_check "personal data protected, then forgotten" \
        'stored first-name' '\{"\$evstore_enc": "' '"first-name": "Casey", "phone-number": "555-8101"' \
        '"first-name": "\[erased\]"' '^ t +\| +7 \| t$' '=> SQLSTATE ES801' '^ lead-12 \| \{\} +\| \{\} +\| \{\} '
    demo_check "append-only" '=> SQLSTATE 42501'
    if [ $rc -eq 0 ] && grep -q '^demo finished' demo.log; then
        echo "ok - demo: exit code 0"; passed=$((passed + 1))
    else
        echo "not ok - demo: exit code $rc"; failed=$((failed + 1)); status=1
    fi
}

# suite "examples": the Python example application's unittest suite against
# a throwaway server (port 5497) started here as the postgres user
run_examples() {
    local d=$work/examples-server rc ran f e
    mkdir -p "$d" && chown postgres:postgres "$d"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$d/data" -A trust >/dev/null
    { cat test/evstore.conf
      echo "port = 5497"; echo "listen_addresses = ''"; echo "unix_socket_directories = '$d'"
      echo "max_connections = 40"; } >> "$d/data/postgresql.conf"
    if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/log" -w start >/dev/null; then
        cat "$d/log"; failed=$((failed + 1)); status=1; return
    fi
    runuser -u postgres -- "$PG_BIN/psql" -X -q -h "$d" -p 5497 -d postgres -c 'CREATE DATABASE examples' >/dev/null
    (cd examples && runuser -u postgres -- env PYTHONDONTWRITEBYTECODE=1 \
        EVSTORE_DSN="host=$d port=5497 dbname=examples user=postgres" \
        /usr/bin/python3 -m unittest discover -s tests -t . -v) > examples.log 2>&1
    rc=$?
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null
    cat examples.log
    ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' examples.log | tail -1)
    f=$(sed -n 's/^FAILED (.*failures=\([0-9]*\).*/\1/p' examples.log | tail -1)
    e=$(sed -n 's/^FAILED (.*errors=\([0-9]*\).*/\1/p' examples.log | tail -1)
    ran=${ran:-0}; f=${f:-0}; e=${e:-0}
    passed=$((passed + ran - f - e)); failed=$((failed + f + e))
    if [ $rc -ne 0 ] || [ "$ran" -eq 0 ]; then
        status=1; [ $((f + e)) -eq 0 ] && failed=$((failed + 1))
    fi
}

for suite in $SUITES; do
    echo "=== $suite"
    case $suite in
        regress)   target=test-regress ;;
        isolation) target=test-isolation ;;
        tap)       target=test-tap ;;
        demo)      run_demo; continue ;;
        examples)  run_examples; continue ;;
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
        # files that skipped everything (e.g. t/110_citus_*.pl without Citus)
        # count neither way: say which, and why
        nskip=$(grep -cE '^t/[^ ]+\.pl \.*[ ]*skipped: ' "$suite.log" || true)
        if [ "$nskip" -gt 0 ]; then
            echo "--- $nskip TAP file(s) skipped:"
            grep -E '^t/[^ ]+\.pl \.*[ ]*skipped: ' "$suite.log" | sed 's/ \.* */ /'
        fi
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
