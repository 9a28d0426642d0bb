# Shared helpers for evstore benchmarks (sourced).  Starts a throwaway
# server as the postgres user on a unix socket, runs pgbench, computes
# medians.  Benchmarks print ratios measured side by side in one run.
set -euo pipefail
# another PostgreSQL: PG_CONFIG=/path/to/pg_config (or PG_BIN=/path/to/bin)
if [ -n "${PG_CONFIG:-}" ]; then PG_BIN=$("$PG_CONFIG" --bindir); fi
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PATH="$PG_BIN:$PATH"
BENCH_PORT=${BENCH_PORT:-5599}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/evstore-bench.XXXXXX)}
BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
chown postgres "$BENCH_DIR"

as_pg() { runuser -u postgres -- "$@"; }

# output_plugin_libraries exists only in releases with the CVE-2026-6471 fix
plugin_libraries_line() {
    if postgres --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
        echo "output_plugin_libraries = 'pgoutput, test_decoding, evstore, wal2json'"
    fi
}

bench_start() {   # extra postgresql.conf lines as $1
    as_pg initdb -D "$BENCH_DIR/data" -A trust >/dev/null
    cat >> "$BENCH_DIR/data/postgresql.conf" <<CONF
port = $BENCH_PORT
listen_addresses = ''
unix_socket_directories = '$BENCH_DIR'
shared_preload_libraries = 'evstore'
shared_buffers = 512MB
max_connections = 100
wal_level = logical
max_replication_slots = 8
$(plugin_libraries_line)
synchronous_commit = ${BENCH_SYNC_COMMIT:-off}
checkpoint_timeout = 30min
max_wal_size = 8GB
${1:-}
CONF
    as_pg pg_ctl -D "$BENCH_DIR/data" -l "$BENCH_DIR/log" -w start >/dev/null
    trap bench_stop EXIT
}

bench_stop() {
    as_pg pg_ctl -D "$BENCH_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$BENCH_DIR"
}

psql_b() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$BENCH_PORT" -d postgres "$@"; }

# pgbench_tps SCRIPT CLIENTS [extra pgbench args...] -> prints tps
pgbench_tps() {
    local script=$1 clients=$2 tps; shift 2
    tps=$(as_pg pgbench -n -h "$BENCH_DIR" -p "$BENCH_PORT" -M prepared -c "$clients" -j "$clients" \
        -T "$BENCH_SECONDS" -f "$script" "$@" postgres 2>&1 |
        tee -a "$BENCH_DIR/pgbench.log" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1) || true
    if [ -z "$tps" ]; then
        echo "pgbench failed for $script:" >&2; grep -E "ERROR|error" "$BENCH_DIR/pgbench.log" | tail -5 >&2; exit 1
    fi
    echo "$tps"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
