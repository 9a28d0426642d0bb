#!/usr/bin/env bash
# Crypto-shredding benchmark: protect + reveal of one 200-byte field per row
# (a jsonb document per row) over ROWS rows, evstore vs pgcrypto:
#   evstore     evstore.protect / evstore.reveal (AES-256-GCM, per-subject keys)
#   pgp_sym     pgp_sym_encrypt / pgp_sym_decrypt, default settings
#   cbc         encrypt_iv / decrypt_iv 'aes-cbc' with a 256-bit key and a
#               random IV per row (unauthenticated, one key for everything)
# Every method does the same work: read the field, encrypt it, store the
# document with the field replaced by base64 text; then read every document
# back with the field decrypted.  evstore runs with SUBJECTS distinct subjects
# (fresh ones each run, so each run also creates and wraps SUBJECTS keys) and
# every measurement runs in a new session (cold key cache).
# Runs are interleaved (the order rotates each round) and the medians printed
# with their ratios.  Needs root (builds and installs like scripts/test.sh,
# under the machine-wide install lock) and pgcrypto (postgresql-contrib).
#
#   ./bench/shredding.sh                       # ROWS=100000 RUNS=3 SUBJECTS=1000
#   ROWS=20000 RUNS=5 PORT=5581 ./bench/shredding.sh
#   METHODS="evstore cbc" ./bench/shredding.sh   # skip the slow pgp_sym runs
set -euo pipefail

ROWS=${ROWS:-100000}
RUNS=${RUNS:-3}
SUBJECTS=${SUBJECTS:-1000}
PORT=${PORT:-5581}
read -r -a METHODS <<< "${METHODS:-evstore cbc pgp_sym}"

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/lib/postgresql/15/bin:$PATH"

exec 9>/tmp/evstore-install.lock
flock 9

work=$(mktemp -d /tmp/shredding-bench.XXXXXX)
cleanup() {
    runuser -u postgres -- pg_ctl -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
cp -a "$here"/. "$work/src"/ 2>/dev/null || { mkdir -p "$work/src"; cp -a "$here"/. "$work/src"/; }
rm -rf "$work/src/.git"
chown -R postgres:postgres "$work"
(cd "$work/src" && make -s clean >/dev/null 2>&1; runuser -u postgres -- make -s >/dev/null && make -s install >/dev/null)

runuser -u postgres -- initdb -D "$work/data" -A trust >/dev/null
cat "$here/test/evstore.conf" >> "$work/data/postgresql.conf"
cat >> "$work/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$work'
shared_buffers = 512MB
fsync = off
synchronous_commit = off
CONF
runuser -u postgres -- pg_ctl -D "$work/data" -l "$work/server.log" -w start >/dev/null

psql_() { runuser -u postgres -- psql -h "$work" -p "$PORT" -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

psql_ <<SQL
CREATE EXTENSION evstore;
CREATE EXTENSION pgcrypto;
CREATE TABLE src (id int PRIMARY KEY, doc jsonb NOT NULL);
INSERT INTO src
SELECT i, jsonb_build_object('id', i, 'kind', 'UserRegistered',
         'field', substr(repeat(md5(i::text), 7), 1, 200), 'plan', 'gold')
FROM generate_series(1, $ROWS) i;
VACUUM ANALYZE src;
CREATE TABLE key AS SELECT gen_random_bytes(32) AS k;
CREATE UNLOGGED TABLE enc (id int, doc jsonb);
-- milliseconds one statement takes
CREATE FUNCTION bench_ms(q text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END \$\$;
SQL

protect_sql() {   # $1 method, $2 run
    case $1 in
    evstore) echo "INSERT INTO enc SELECT id, evstore.protect(doc, 'bench-$2-' || (id % $SUBJECTS), '{field}') FROM src" ;;
    pgp_sym) echo "INSERT INTO enc SELECT id, jsonb_set(doc, '{field}', to_jsonb(encode(pgp_sym_encrypt(doc->>'field', 'bench password'), 'base64'))) FROM src" ;;
    cbc)     echo "INSERT INTO enc SELECT s.id, jsonb_set(s.doc, '{field}', to_jsonb(encode(x.iv || encrypt_iv(convert_to(s.doc->>'field', 'UTF8'), (SELECT k FROM key), x.iv, 'aes-cbc'), 'base64'))) FROM src s, LATERAL (SELECT gen_random_bytes(16 + 0 * s.id) AS iv OFFSET 0) x" ;;
    esac
}
reveal_sql() {
    case $1 in
    evstore) echo "SELECT sum(length(evstore.reveal(doc)->>'field')) FROM enc" ;;
    pgp_sym) echo "SELECT sum(length(jsonb_set(doc, '{field}', to_jsonb(pgp_sym_decrypt(decode(doc->>'field', 'base64'), 'bench password')))->>'field')) FROM enc" ;;
    cbc)     echo "SELECT sum(length(jsonb_set(e.doc, '{field}', to_jsonb(convert_from(decrypt_iv(substr(x.b, 17), (SELECT k FROM key), substr(x.b, 1, 16), 'aes-cbc'), 'UTF8')))->>'field')) FROM enc e, LATERAL (SELECT decode(e.doc->>'field', 'base64') AS b OFFSET 0) x" ;;
    esac
}
check_sql="SELECT count(*) FILTER (WHERE NOT (doc->'field' ? '\$evstore_enc' OR jsonb_typeof(doc->'field') = 'string')) FROM enc"

declare -A results
echo "shredding bench: rows=$ROWS runs=$RUNS subjects=$SUBJECTS (200-byte field, protect + reveal, medians)"
for ((r = 0; r < RUNS; r++)); do
    n=${#METHODS[@]}
    for ((j = 0; j < n; j++)); do
        m=${METHODS[$(((j + r) % n))]}
        psql_ -c "TRUNCATE enc" -c "CHECKPOINT" >/dev/null
        p=$(psql_ -At -c "SELECT bench_ms(\$q\$$(protect_sql "$m" "$r")\$q\$)")
        v=$(psql_ -At -c "SELECT bench_ms(\$q\$$(reveal_sql "$m")\$q\$)")
        # every method really produced $ROWS documents that reveal to the original length
        ok=$(psql_ -At -c "SELECT count(*) = $ROWS FROM enc")
        [ "$ok" = t ] || { echo "method $m produced the wrong row count"; exit 1; }
        printf '  run %d %-8s protect %9.1f ms  reveal %9.1f ms\n' "$r" "$m" "$p" "$v"
        results[$m]+="$p $v;"
    done
done
# the evstore documents really are protected and reveal to the plaintext
psql_ -At -c "TRUNCATE enc" -c "INSERT INTO enc SELECT id, evstore.protect(doc, 'bench-check-' || (id % $SUBJECTS), '{field}') FROM src WHERE id <= 1000" \
    -c "SELECT 'check: ' || count(*) FILTER (WHERE e.doc->'field' ? '\$evstore_enc' AND evstore.reveal(e.doc) = s.doc) || ' of ' || count(*) || ' round trips ok' FROM enc e JOIN src s USING (id)"

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
declare -A med
echo
printf '%-8s %12s %12s %12s\n' method protect_ms reveal_ms total_ms
for m in "${METHODS[@]}"; do
    p=$(echo "${results[$m]}" | tr ';' '\n' | awk 'NF {print $1}' | median)
    v=$(echo "${results[$m]}" | tr ';' '\n' | awk 'NF {print $2}' | median)
    t=$(echo "${results[$m]}" | tr ';' '\n' | awk 'NF {print $1 + $2}' | median)
    med[$m]=$t
    printf '%-8s %12.1f %12.1f %12.1f\n' "$m" "$p" "$v" "$t"
done
echo
awk -v e="${med[evstore]:-0}" -v p="${med[pgp_sym]:-0}" -v c="${med[cbc]:-0}" 'BEGIN {
    if (e > 0 && p > 0) printf "evstore vs pgp_sym_encrypt/decrypt: %.1fx faster (target >= 20x)\n", p / e;
    if (e > 0 && c > 0) printf "evstore vs encrypt_iv/decrypt_iv (aes-cbc): %.2fx as fast (target >= 1.00x)\n", c / e;
}'
