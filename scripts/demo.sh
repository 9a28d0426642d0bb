#!/usr/bin/env bash
# evstore demo: installs what is missing, builds and installs evstore,
# starts a throwaway PostgreSQL server, and walks through the "lead" example:
# appends, an optimistic-concurrency conflict, an idempotent retry, reads.
# The server is stopped and removed at the end.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi

here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/setup-debian.sh" >/dev/null
# another PostgreSQL: PG_CONFIG=/path/to/pg_config
export PATH="$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir):$PATH"
# output_plugin_libraries exists only in releases with the CVE-2026-6471 fix
plugin_libs() { postgres --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null && echo "$1" || true; }

# one build/install at a time per machine (scripts/test.sh takes the same lock)
exec 9>/tmp/evstore-install.lock
flock 9

work=$(mktemp -d /tmp/evstore-demo.XXXXXX)
cp -a "$here"/. "$work/src" && rm -rf "$work/src/.git"
chown -R postgres:postgres "$work"
(cd "$work/src" && runuser -u postgres -- make -s >/dev/null && make -s install >/dev/null)

pg() { runuser -u postgres -- "$@"; }
pg initdb -D "$work/data" -A trust >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$work'
port = 5498
shared_preload_libraries = 'evstore'
wal_level = logical
$(plugin_libs "output_plugin_libraries = 'pgoutput, test_decoding, evstore'")
CONF
pg pg_ctl -D "$work/data" -l "$work/log" -w start >/dev/null
trap 'pg pg_ctl -D "$work/data" -m fast -w stop >/dev/null; rm -rf "$work"' EXIT

pg psql -X -h "$work" -p 5498 -d postgres -v ON_ERROR_STOP=0 <<'SQL'
\pset footer off
\echo '== CREATE EXTENSION evstore'
CREATE EXTENSION evstore;

\echo
\echo '== A lead is created and worked on: 7 events, versions 0..6'
SELECT * FROM evstore.append_event('lead-42', 'LeadCreated',
    '{"name": "Kim Minji", "phone": "010-1234-5678"}', expected_version => -1);
SELECT * FROM evstore.append_events('lead-42', '[
  {"type": "LeadContacted",         "data": {"by": "sales-7"}},
  {"type": "FollowUpScheduled",     "data": {"at": "2026-12-01T10:00:00Z"}},
  {"type": "ContactDetailsUpdated", "data": {"phone": "010-9999-0000"}},
  {"type": "FollowUpScheduled",     "data": {"at": "2026-12-05T10:00:00Z"}},
  {"type": "OrderSubmitted",        "data": {"amount": 120000}},
  {"type": "PaymentConfirmed",      "data": {"amount": 120000}}
]', expected_version => 0);
SELECT evstore.stream_version('lead-42') AS "Version";

\echo
\echo '== Two salespeople both loaded version 6; the first one wins ...'
SELECT * FROM evstore.append_event('lead-42', 'LeadQualified', '{}', expected_version => 6);
\echo '== ... the second gets SQLSTATE ES001 (wrong expected version)'
\set VERBOSITY verbose
SELECT * FROM evstore.append_event('lead-42', 'LeadDisqualified', '{}', expected_version => 6);
\set VERBOSITY default

\echo
\echo '== An append retried after a lost reply (same event id) returns the original result'
SELECT * FROM evstore.append_event('lead-43', 'LeadCreated', '{"name": "Lee"}', NULL, -1, '0192f0a0-0000-7000-8000-000000000001');
SELECT * FROM evstore.append_event('lead-43', 'LeadCreated', '{"name": "Lee"}', NULL, -1, '0192f0a0-0000-7000-8000-000000000001');

\echo
\echo '== Reading the stream back (and time travel: the lead as of version 3)'
SELECT stream_version, event_type, data FROM evstore.read_stream('lead-42');
SELECT stream_version, event_type FROM evstore.read_stream('lead-42', 0, 3 + 1);

\echo
\echo '== The subscription read: every event in the store, in global order'
SELECT global_position, stream_id, stream_version, event_type FROM evstore.read_all(after_position => 0, max_count => 20);

\echo
\echo '== The store is append-only, for everyone'
DELETE FROM evstore.events;
SQL
echo
echo "demo finished; the throwaway server has been stopped."
