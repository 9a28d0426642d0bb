#!/usr/bin/env bash
# evstore demo: installs what is missing, builds and installs evstore, starts
# a throwaway PostgreSQL server and walks through the whole story with the
# "lead" example (a sales lead created, worked on and converted: 7 events,
# versions 0..6):
#
#   1. appends with expected versions, a conflict (ES001), an idempotent retry
#   2. time travel: the lead as of a version, the store as of a position
#   3. a read model kept by a projection in the appending transaction
#      (and rolled back with it)
#   4. the transaction-log feed (the evstore output plugin, pg_recvlogical)
#   5. a durable subscription consumer with mark_processed
#   6. crypto-shredding: the lead's personal data protected, then forgotten
#   7. the store is append-only
#
# The server is stopped and removed at the end.  Output is a walkthrough;
# scripts/test.sh (suite "demo") checks every step of it.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi

here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/setup-debian.sh" >/dev/null
# another PostgreSQL: PG_CONFIG=/path/to/pg_config
export PATH="$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir):$PATH"
# output_plugin_libraries exists only in releases with the CVE-2026-6471 fix
# (grep without -q: with pipefail, an early exit of grep -q would make the
# pipeline fail with SIGPIPE in postgres)
plugin_libs() { postgres --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null && echo "$1" || true; }
port=${DEMO_PORT:-5498}

work=$(mktemp -d /tmp/evstore-demo.XXXXXX)
# EVSTORE_INSTALLED=1: scripts/test.sh has built and installed this tree and
# holds the install lock; otherwise build and install a copy under the lock
if [ "${EVSTORE_INSTALLED:-0}" != 1 ]; then
    # one build/install at a time per machine (scripts/test.sh takes the same lock)
    exec 9>/tmp/evstore-install.lock
    flock 9
    cp -a "$here"/. "$work/src" && rm -rf "$work/src/.git"
    chown -R postgres:postgres "$work"
    (cd "$work/src" && runuser -u postgres -- make -s >/dev/null && make -s install >/dev/null)
fi
chown -R postgres:postgres "$work"

pg() { runuser -u postgres -- "$@"; }
pg initdb -D "$work/data" -A trust >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$work'
port = $port
shared_preload_libraries = 'evstore'
wal_level = logical
$(plugin_libs "output_plugin_libraries = 'pgoutput, test_decoding, evstore'")
# crypto-shredding: a DEMO master key, printed by a command.  Never put a key
# into postgresql.conf in production: use evstore.master_key_file or a
# command that asks your secret store (docs/shredding.md).
evstore.master_key_command = 'echo 1 5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed'
CONF
pg pg_ctl -D "$work/data" -l "$work/log" -w start >/dev/null
feed_pid=
cleanup() {
    [ -n "$feed_pid" ] && kill "$feed_pid" 2>/dev/null || true
    pg pg_ctl -D "$work/data" -m fast -w stop >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# psql reading a script from standard input; errors are shown, not fatal
sql() { pg psql -X -q -h "$work" -p "$port" -d postgres -v ON_ERROR_STOP=0 -v VERBOSITY=default "$@" 2>&1; }
step() { echo; echo "=============================================================================="; echo "== $*"; echo "=============================================================================="; }
say() { echo "   $*"; }

step "0. Setup: the extension, a read model, a subscription, a feed slot"
say "CREATE EXTENSION evstore; then, before any event exists:"
say " - lead_search: a read model (table) kept by the projection project_lead"
say " - 'lead-mailer': a durable subscription over the category 'lead'"
say " - 'lead_feed': a logical replication slot using the evstore output plugin"
sql <<'SQL'
\pset footer off
CREATE EXTENSION evstore;

-- the read model of the background text: names and phone numbers a lead had
CREATE TABLE public.lead_search (
    lead_id       text PRIMARY KEY,
    first_names   text[] NOT NULL DEFAULT '{}',
    last_names    text[] NOT NULL DEFAULT '{}',
    phone_numbers text[] NOT NULL DEFAULT '{}',
    status        text,
    version       bigint NOT NULL
);
CREATE FUNCTION public.add_once(a text[], v text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL OR v = ANY (a) THEN a ELSE a || v END
$$;
-- runs inside every append of a 'lead' (or 'privacy') event, in its transaction
CREATE FUNCTION public.project_lead(e evstore.events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d jsonb := evstore.reveal(e.data);    -- the projection may read personal data
BEGIN
    IF e.category = 'privacy' THEN        -- a subject was forgotten: erase the copies
        UPDATE public.lead_search
        SET first_names = '{}', last_names = '{}', phone_numbers = '{}'
        WHERE lead_id = d ->> 'subject';
        RETURN;
    END IF;
    INSERT INTO public.lead_search AS l (lead_id, version) VALUES (e.stream_id, e.stream_version)
    ON CONFLICT (lead_id) DO UPDATE SET version = EXCLUDED.version;
    UPDATE public.lead_search SET
        first_names   = public.add_once(first_names, d ->> 'first-name'),
        last_names    = public.add_once(last_names, d ->> 'last-name'),
        phone_numbers = public.add_once(phone_numbers, d ->> 'phone-number'),
        status = CASE e.event_type
                     WHEN 'lead-initialized'  THEN 'new'
                     WHEN 'contacted'         THEN 'contacted'
                     WHEN 'followup-set'      THEN 'follow-up'
                     WHEN 'order-submitted'   THEN 'pending-payment'
                     WHEN 'payment-confirmed' THEN d ->> 'status'
                     WHEN 'lead-disqualified' THEN 'disqualified'
                     ELSE status END
    WHERE lead_id = e.stream_id;
END $$;
\o /dev/null
SELECT evstore.create_projection('lead_search', 'public.project_lead(evstore.events)',
                                 categories => ARRAY['lead', 'privacy']);
SELECT evstore.create_subscription('lead-mailer', categories => ARRAY['lead']);
SELECT pg_create_logical_replication_slot('lead_feed', 'evstore');
\o
SELECT name AS projection, kind, handler, categories FROM evstore.projections;
SELECT name AS subscription, member, categories, acked_position FROM evstore.subscriptions;
SELECT slot_name, plugin, slot_type FROM pg_replication_slots;
SQL

say "pg_recvlogical now tails the slot in the background, writing to feed.jsonl"
pg_recvlogical -U postgres -h "$work" -p "$port" -d postgres --slot lead_feed --start \
    -o include-metadata=false -F 0 -f "$work/feed.jsonl" 2>"$work/feed.err" &
feed_pid=$!

step "1. The lead is created and worked on: appends with expected versions"
say "Each command loads the stream, decides, and appends with the version it saw"
say "(expected_version).  The personal fields are encrypted for the subject"
say "'lead-12' with evstore.protect before they are stored."
sql <<'SQL'
\pset footer off
\set pii '{first-name,last-name,phone-number}'
\echo '-- event 0: the lead is created (expected_version -1: the stream must not exist)'
SELECT * FROM evstore.append_event('lead-12', 'lead-initialized',
    evstore.protect('{"first-name": "Casey", "last-name": "David", "phone-number": "555-2951",
                      "timestamp": "2020-05-20T09:52:55.95Z"}', 'lead-12', :'pii'),
    expected_version => -1);
\echo '-- events 1 and 2: a sales rep calls and sets a follow-up (one batch, expected 0)'
SELECT * FROM evstore.append_events('lead-12', '[
  {"type": "contacted",    "data": {"timestamp": "2020-05-20T12:32:08.24Z"}},
  {"type": "followup-set", "data": {"followup-on": "2020-05-27T12:00:00.00Z",
                                    "timestamp": "2020-05-20T12:32:08.24Z"}}]', expected_version => 0);
\echo '-- event 3: rep A fixes the last name and the phone number (expected 2)'
SELECT * FROM evstore.append_event('lead-12', 'contact-details-updated',
    evstore.protect('{"first-name": "Casey", "last-name": "Davis", "phone-number": "555-8101",
                      "timestamp": "2020-05-20T12:32:08.24Z"}', 'lead-12', :'pii'),
    expected_version => 2);
\echo
\echo '-- CONFLICT: rep B had loaded the lead at version 2 too and logs a call:'
SELECT * FROM evstore.append_event('lead-12', 'contacted',
    '{"timestamp": "2020-05-27T12:02:12.51Z"}', expected_version => 2);
\echo '   => SQLSTATE' :LAST_ERROR_SQLSTATE '(wrong expected version): nothing was written.'
SELECT evstore.stream_version('lead-12') AS "rep B reloads: version";
\echo '-- event 4: rep B sees the new phone number, calls it, appends with expected 3'
SELECT * FROM evstore.append_event('lead-12', 'contacted',
    '{"timestamp": "2020-05-27T12:02:12.51Z"}', expected_version => 3);
SQL

step "2. An idempotent retry: the same event id returns the original result"
say "The client generates the event id.  Its first reply is lost (network), so it"
say "sends the same append again, even with its now stale expected version:"
say "evstore recognizes the id and returns the original (version, position)."
sql <<'SQL'
\pset footer off
\echo '-- event 5: an order is submitted (client-generated id ...0005)'
SELECT * FROM evstore.append_event('lead-12', 'order-submitted',
    '{"payment-deadline": "2020-05-30T12:02:12.51Z", "timestamp": "2020-05-27T12:02:12.51Z"}',
    NULL, 4, '0192f0a0-0000-7000-8000-000000000005');
\echo '-- the same request, retried:'
SELECT * FROM evstore.append_event('lead-12', 'order-submitted',
    '{"payment-deadline": "2020-05-30T12:02:12.51Z", "timestamp": "2020-05-27T12:02:12.51Z"}',
    NULL, 4, '0192f0a0-0000-7000-8000-000000000005');
SELECT count(*) AS "order-submitted events stored"
FROM evstore.read_stream('lead-12') WHERE event_type = 'order-submitted';
\echo '-- event 6: the payment is confirmed; the lead is converted'
SELECT * FROM evstore.append_event('lead-12', 'payment-confirmed',
    '{"status": "converted", "timestamp": "2020-05-27T12:38:44.12Z"}', expected_version => 5);
\echo
SELECT stream_version, event_type, evstore.reveal(data) - 'timestamp' AS "data (revealed, without timestamp)"
FROM evstore.read_stream('lead-12');
SELECT 'lead-12' AS "LeadId", evstore.stream_version('lead-12') AS "Version";
SQL

step "3. Time travel: the lead as of version 3, the store as of a position"
say "State is a fold over events; stopping the fold earlier gives the past."
say "read_stream(stream, 0, n + 1) is the stream up to version n; a global"
say "position cuts the whole store at one moment."
sql <<'SQL'
\pset footer off
SELECT stream_version, event_type FROM evstore.read_stream('lead-12', 0, 3 + 1);
\echo '-- the phone number to call, as of each version (the last one set up to it):'
SELECT v.version AS "as of version",
       (SELECT evstore.reveal(e.data) ->> 'phone-number' FROM evstore.read_stream('lead-12', 0, v.version + 1) e
        WHERE e.data ? 'phone-number' ORDER BY e.stream_version DESC LIMIT 1) AS "phone number"
FROM generate_series(0, 6, 3) AS v(version);
SELECT global_position AS p FROM evstore.read_stream('lead-12') WHERE stream_version = 2 \gset
\echo '-- the whole store as of global position' :p
SELECT stream_id, max(stream_version) AS version, count(*) AS events
FROM evstore.events WHERE global_position <= :p GROUP BY stream_id;
SQL

step "4. A read model kept by a projection, in the appending transaction"
say "project_lead ran inside each append above: the read model is exactly as"
say "current as the events (no lag, no second system).  This is the search"
say "model of the background text:"
sql <<'SQL'
\pset footer off
\pset tuples_only on
\pset format unaligned
SELECT format(E'   LeadId: %s\n   FirstNames: %s\n   LastNames: %s\n   PhoneNumbers: %s\n   Status: %s\n   Version: %s',
              lead_id, first_names, last_names, phone_numbers, status, version)
FROM public.lead_search;
\pset tuples_only off
\pset format aligned
\echo
\echo '-- an append that rolls back takes its read-model change with it:'
BEGIN;
SELECT * FROM evstore.append_event('lead-12', 'lead-disqualified', '{"reason": "test"}', expected_version => 6);
SELECT status AS "status inside the transaction", version FROM public.lead_search;
ROLLBACK;
\echo '-- ROLLBACK'
SELECT status AS "status after the rollback", version,
       evstore.stream_version('lead-12') AS "stream version" FROM public.lead_search;
SQL

step "5. The transaction-log feed: pg_recvlogical on the evstore output plugin"
say "pg_recvlogical has been streaming the slot 'lead_feed' while we appended."
say "The feed has each committed event once, in commit order; the rejected"
say "append (ES001), the retry and the rolled-back one are not in it."
expected=$(echo "SELECT count(*) FROM evstore.events" | sql -tA)
for _ in $(seq 1 100); do
    [ "$(cat "$work/feed.jsonl" 2>/dev/null | grep -c '"global_position"')" -ge "$expected" ] && break
    sleep 0.1
done
kill -INT "$feed_pid"; wait "$feed_pid" 2>/dev/null || true; feed_pid=
[ -s "$work/feed.jsonl" ] || { echo "   pg_recvlogical wrote nothing:"; cat "$work/feed.err"; }
say "pg_recvlogical stopped; its output (feed.jsonl), shortened to a few keys:"
/usr/bin/python3 - "$work/feed.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    data = json.dumps(e["data"])
    print("   pos %-3s %-8s v%s %-24s lsn %-10s %s" % (
        e["global_position"], e["stream_id"], e["stream_version"], e["event_type"],
        e["commit_lsn"], data if len(data) < 60 else data[:57] + "..."))
types = [json.loads(l)["event_type"] for l in open(sys.argv[1])]
print("   the rolled-back lead-disqualified is in the feed: %s" % ("yes" if "lead-disqualified" in types else "no"))
PY
echo "   $(wc -l < "$work/feed.jsonl") lines; events 1 and 2 were one transaction (one commit_lsn);"
say "personal fields travel encrypted (\$evstore_enc), as they are stored."

step "6. A subscription consumer with mark_processed"
say "The mailer fetches from the durable subscription 'lead-mailer', records each"
say "event with mark_processed in the same transaction as its work (an outbox"
say "row), and acknowledges the last position.  Delivery is at least once; the"
say "processed-message record makes the handler's effect exactly once."
sql <<'SQL'
\pset footer off
CREATE TABLE public.mail_outbox (event_id uuid, lead_id text, kind text);
CREATE FUNCTION public.mailer_run(ack boolean,
    OUT fetched int, OUT handled int, OUT skipped int, OUT acked_to bigint)
LANGUAGE plpgsql AS $$
DECLARE e evstore.events;
BEGIN
    fetched := 0; handled := 0; skipped := 0;
    FOR e IN SELECT * FROM evstore.subscription_fetch('lead-mailer', 0, 100, 'mailer-1') LOOP
        fetched := fetched + 1;
        IF evstore.mark_processed('lead-mailer', e.event_id) THEN
            INSERT INTO public.mail_outbox VALUES (e.event_id, e.stream_id, e.event_type);
            handled := handled + 1;
        ELSE
            skipped := skipped + 1;       -- seen before: do nothing
        END IF;
        acked_to := e.global_position;
    END LOOP;
    IF ack AND acked_to IS NOT NULL THEN
        PERFORM evstore.subscription_ack('lead-mailer', 0, acked_to, 'mailer-1');
    END IF;
END $$;
\echo '-- run 1: the worker handles the batch, then crashes before it acknowledges'
SELECT * FROM public.mailer_run(ack => false);
\echo '-- run 2 (restarted worker): the same events come again; all are skipped'
SELECT * FROM public.mailer_run(ack => true);
\echo '-- run 3: nothing new'
SELECT * FROM public.mailer_run(ack => true);
SELECT count(*) AS "outbox rows", count(DISTINCT event_id) AS "distinct events" FROM public.mail_outbox;
SELECT name, member, acked_position, lag, consumer FROM evstore.subscriptions;
SQL

step "7. Crypto-shredding: the lead's personal data is forgotten"
say "The stored events hold only ciphertext for the personal fields; reveal()"
say "decrypts with the subject's key.  forget('lead-12') destroys that key."
say "NOTE: this demo server's master key is a fixed DEMO key set inline in"
say "postgresql.conf (evstore.master_key_command = 'echo 1 5eed...'): never do"
say "that in production (docs/shredding.md)."
sql <<'SQL'
\pset footer off
\echo '-- before: event 0 as stored (ciphertext) and as revealed'
SELECT data ->> 'first-name' AS "stored first-name" FROM evstore.read_stream('lead-12', 0, 1);
SELECT stream_version, event_type, evstore.reveal(data) - 'timestamp' AS "revealed data"
FROM evstore.read_stream('lead-12') WHERE data ? 'first-name';
SELECT md5(string_agg(data::text, ',' ORDER BY stream_version)) AS digest
FROM evstore.read_stream('lead-12') \gset before_
\echo '   digest of the stored events:' :before_digest
BEGIN;
SELECT evstore.forget('lead-12') AS "forget('lead-12')";
-- the application tells every read model, in the same transaction
SELECT * FROM evstore.append_event('privacy-lead-12', 'subject-forgotten', '{"subject": "lead-12"}');
COMMIT;
\echo '-- after: the same events, revealed'
SELECT stream_version, event_type, evstore.reveal(data, '"[erased]"') - 'timestamp' AS "revealed data"
FROM evstore.read_stream('lead-12') WHERE data ? 'first-name';
SELECT md5(string_agg(data::text, ',' ORDER BY stream_version)) = :'before_digest' AS "stored events unchanged",
       count(*) AS events, evstore.is_forgotten('lead-12') AS "is_forgotten"
FROM evstore.read_stream('lead-12');
SELECT lead_id AS "LeadId", first_names AS "FirstNames", last_names AS "LastNames",
       phone_numbers AS "PhoneNumbers", status AS "Status", version AS "Version"
FROM public.lead_search;
\echo '-- new personal data for a forgotten subject is refused:'
SELECT evstore.protect('{"first-name": "Casey"}', 'lead-12', '{first-name}');
\echo '   => SQLSTATE' :LAST_ERROR_SQLSTATE
SQL

step "8. The store is append-only, for everyone (superusers included)"
sql <<'SQL'
DELETE FROM evstore.events;
\echo '   => SQLSTATE' :LAST_ERROR_SQLSTATE
SQL

echo
echo "demo finished; the throwaway server has been stopped."
