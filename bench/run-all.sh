#!/usr/bin/env bash
# Run every benchmark in bench/ and collect the results:
#
#   sudo bench/run-all.sh                  # all of them
#   sudo bench/run-all.sh appends reads    # some (names without .sh)
#
# What it does:
#   1. builds this tree in a copy (as it is on disk, committed or not);
#   2. runs each benchmark found here (core, appends, reads, growth, and
#      decoder, shredding, projections, lifecycle* when present), each under
#      /tmp/evstore-install.lock with a fresh `make install` of that copy
#      first, so it measures this tree even if other trees were installed
#      meanwhile (growth.sh takes the lock itself, per step);
#   3. writes bench/results/<UTC timestamp>/: one <bench>.txt per benchmark
#      (its full output), results.csv (every median and ratio), ratios.png
#      (a bar chart of the ratios, gnuplot) and summary.txt (the table it
#      prints last).
#
# Each benchmark measures its alternatives interleaved (A, B, A, B, ...) and
# reports medians of BENCH_ROUNDS runs of BENCH_SECONDS seconds.  Defaults
# here: BENCH_SECONDS=3 BENCH_ROUNDS=3, GROWTH_SIZES="100000 1000000";
# override them in the environment.  Servers use BENCH_PORT 5602-5609.
#
# Benchmarks report to this script with lines on stdout:
#   RESULT,<bench>,<test>,<variant>,<median>,<unit>,<run values...>
#   RATIO,<bench>,<test>,<comparison>,<value>
# (the tables of core.sh, decoder.sh and lifecycle.sh are parsed instead).
# Scripts that take the lock themselves (growth.sh, decoder.sh) are not
# wrapped in it.  decoder.sh gets N=${DECODER_N:-200000}.
set -euo pipefail
if [ "${1:-}" != --report ] && [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export PATH="/usr/lib/postgresql/15/bin:$PATH"
export BENCH_SECONDS=${BENCH_SECONDS:-3} BENCH_ROUNDS=${BENCH_ROUNDS:-3}
export GROWTH_SIZES=${GROWTH_SIZES:-"100000 1000000"}
LOCK=/tmp/evstore-install.lock

if ! command -v gnuplot >/dev/null; then
    echo "installing gnuplot-nox for the chart" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null ||
        echo "gnuplot unavailable: no chart" >&2
fi

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain 2>/dev/null | grep -v '^??' | head -1 || true)
report_only=0
if [ "${1:-}" = --report ]; then   # bench/run-all.sh --report DIR: redo csv, table, chart
    report_only=1; out=$(cd "$2" && pwd); ts=$(basename "$out"); shift 2
    commit=$(sed -n 's/^commit \([0-9a-f]*\).*/\1/p' "$out/conditions.txt" 2>/dev/null | head -1); commit=${commit:-unknown}
    names=(); for f in "$out"/*.txt; do n=$(basename "$f" .txt); [ "$n" != summary ] && [ "$n" != conditions ] && names+=("$n"); done
else
ts=$(date -u +%Y%m%dT%H%M%SZ)
out=$here/results/$ts
mkdir -p "$out"

build=$(mktemp -d /tmp/evstore-bench-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
tar -C "$root" --exclude=.git --exclude=bench/results --exclude=tmp_check -cf - . | tar -C "$build" -xf -
make -s -C "$build" clean >/dev/null 2>&1 || true
make -s -C "$build" >/dev/null
export BENCH_INSTALL_CMD="make -s -C $build install"

if [ $# -gt 0 ]; then
    names=("$@")
else
    names=()
    for n in core appends multi reads growth decoder shredding projections async; do
        [ -f "$here/$n.sh" ] && names+=("$n")
    done
    for f in "$here"/lifecycle*.sh; do [ -f "$f" ] && names+=("$(basename "$f" .sh)"); done
fi

port=5602
for n in "${names[@]}"; do
    echo "=== $n (BENCH_PORT=$port, $(date -u +%H:%M:%S))" >&2
    status=0
    if grep -qE 'exec [0-9]+>.*(evstore-install\.lock|\$LOCK)' "$here/$n.sh"; then
        # takes the lock itself (growth.sh per step, decoder.sh for its own build)
        BENCH_PORT=$port PORT=$port ROUNDS=$BENCH_ROUNDS N=${DECODER_N:-200000} \
            bash "$here/$n.sh" >"$out/$n.txt" 2>"$out/$n.log" || status=$?
    else
        BENCH_PORT=$port flock "$LOCK" bash -c "$BENCH_INSTALL_CMD >/dev/null && bash '$here/$n.sh'" \
            >"$out/$n.txt" 2>"$out/$n.log" || status=$?
    fi
    [ $status -ne 0 ] && { echo "  $n failed ($status), see $out/$n.log" >&2; tail -5 "$out/$n.log" >&2; }
    port=$(( port == 5609 ? 5602 : port + 1 ))
done
fi

# results.csv: RESULT/RATIO lines, core.sh's table parsed into the same form
perl -e '
    my ($dir, @names) = @ARGV;
    open my $csv, ">", "$dir/results.csv" or die;
    print $csv "kind,bench,test,variant,value,unit,runs\n";
    my (%shred, $shred_rows);
    sub cq { my $s = shift; $s =~ /[",]/ ? do { $s =~ s/"/""/g; "\"$s\"" } : $s }
    for my $n (@names) {
        open my $fh, "<", "$dir/$n.txt" or next;
        while (<$fh>) {
            chomp;
            if (my @m = /^RESULT,([^,]*),(.*),([^,]*),([^,]*),([^,]*),([^,]*)$/) {
                print $csv join(",", "result", cq($m[0]), cq($m[1]), cq($m[2]), $m[3], $m[4], cq($m[5])), "\n";
            } elsif (@m = /^RATIO,([^,]*),(.*),([^,]*),([^,]*)$/) {
                print $csv join(",", "ratio", cq($m[0]), cq($m[1]), cq($m[2]), $m[3], "", ""), "\n";
            } elsif ($n eq "decoder" && (@m = /^median (\S+) *: ([\d.]+) events\/s/)) {
                print $csv join(",", "result", "decoder", "decode a slot (events/s)", $m[0], $m[1], "events/s", ""), "\n";
            } elsif ($n eq "decoder" && (@m = /^ratio evstore\/wal2json: ([\d.]+)x/)) {
                print $csv join(",", "ratio", "decoder", "decode a slot (events/s)", "evstore/wal2json", $m[0], "", ""), "\n";
            } elsif ($n =~ /^lifecycle/ && (@m = /^(\S.*?) +([\d.]+) +([\d.]+) +([\d.]+)$/)) {
                my $t = $m[0]; $t =~ s/\s+$//;
                print $csv join(",", "result", cq($n), cq($t), "A", $m[1], "tps", ""), "\n";
                print $csv join(",", "result", cq($n), cq($t), "B", $m[2], "tps", ""), "\n";
                print $csv join(",", "ratio", cq($n), cq($t), "B/A", $m[3], "", ""), "\n";
            } elsif ($n eq "shredding" && /^shredding bench: rows=(\d+)/) {
                $shred_rows = $1;
            } elsif ($n eq "shredding" && $shred_rows && (@m = /^(evstore|cbc|pgp_sym) +([\d.]+) +([\d.]+) +([\d.]+)$/)) {
                # values protected and revealed per second (200-byte field)
                my $t = "protect+reveal (values/s)";
                $shred{$m[0]} = $shred_rows * 1000 / $m[3];
                print $csv join(",", "result", "shredding", cq($t), $m[0], $shred{$m[0]}, "values/s", ""), "\n";
                if (keys %shred == 3) {
                    printf $csv "ratio,shredding,%s,evstore/pgp_sym,%.2f,,\n", cq($t), $shred{evstore} / $shred{pgp_sym};
                    printf $csv "ratio,shredding,%s,evstore/cbc,%.2f,,\n", cq($t), $shred{evstore} / $shred{cbc};
                }
            } elsif ($n eq "projections" && (@m = /^median tps: none ([\d.]+), sync ([\d.]+), nomatch20 ([\d.]+), copy ([\d.]+), copy_trg ([\d.]+)/)) {
                my $t = "single-event append (tps)";
                print $csv join(",", "result", "projections", cq($t), "no-projection", $m[0], "tps", ""), "\n";
                print $csv join(",", "result", "projections", cq($t), "sync-projection", $m[1], "tps", ""), "\n";
                print $csv join(",", "result", "projections", cq($t), "20-nonmatching", $m[2], "tps", ""), "\n";
                printf $csv "ratio,projections,%s,sync-projection/no-projection,%.2f,,\n", cq($t), $m[1] / $m[0];
                printf $csv "ratio,projections,%s,20-nonmatching/no-projection,%.2f,,\n", cq($t), $m[2] / $m[0];
            } elsif ($n eq "projections" && (@m = /^batches of 50 events, time per event: none ([\d.]+) us, sync ([\d.]+) us, nomatch20 ([\d.]+) us/)) {
                my $t = "append_events of 50 (events/s)";
                print $csv join(",", "result", "projections", cq($t), "no-projection", 1e6 / $m[0], "events/s", ""), "\n";
                print $csv join(",", "result", "projections", cq($t), "sync-projection", 1e6 / $m[1], "events/s", ""), "\n";
                printf $csv "ratio,projections,%s,sync-projection/no-projection,%.2f,,\n", cq($t), $m[0] / $m[1];
            } elsif ($n eq "projections" && (@m = /^ratio trigger\/projection added cost[^:]*: ([\d.]+)/)) {
                print $csv join(",", "ratio", "projections", "cost added per event", "plpgsql-trigger/sync-projection", $m[0], "", ""), "\n";
            } elsif ($n eq "core" && (@m = /^(.{44}) +([\d.]+) +([\d.]+) +([\d.]+) +(.*)$/)) {
                my $t = $m[0]; $t =~ s/\s+$//;
                print $csv join(",", "result", "core", cq($t), "evstore", $m[1], "tps", ""), "\n";
                print $csv join(",", "result", "core", cq($t), "plain-sql", $m[2], "tps", ""), "\n";
                print $csv join(",", "ratio", "core", cq($t), "evstore/plain-sql", $m[3], "", ""), "\n";
            }
        }
    }
' "$out" "${names[@]}"

# the table: every ratio with the two medians it divides (when known)
perl -e '
    my ($dir) = @ARGV;
    open my $fh, "<", "$dir/results.csv" or die;
    <$fh>;
    my (%med, @ratios);
    while (<$fh>) {
        chomp;
        my @f; push @f, defined $1 ? do { (my $x = $1) =~ s/""/"/g; $x } : $2
            while /\G(?:"((?:[^"]|"")*)"|([^,]*))(?:,|$)/g && @f < 7;
        if ($f[0] eq "result") { $med{"$f[1]|$f[2]|$f[3]"} = $f[4] }
        else { push @ratios, [@f] }
    }
    open my $sum, ">", "$dir/summary.txt" or die;
    open my $dat, ">", "$dir/ratios.dat" or die;
    my $fmt = "%-10s %-50s %-28s %12s %12s %7s\n";
    my $hdr = sprintf $fmt, "bench", "test", "ratio", "numerator", "denominator", "ratio";
    print $sum $hdr; print $hdr;
    my $i = 0;
    for my $r (@ratios) {
        my ($b, $t, $c, $v) = @$r[1..4];
        my ($num, $den) = split m{/}, $c;
        my $a = $med{"$b|$t|$num"} // ""; my $d = defined $den ? ($med{"$b|$t|$den"} // "") : "";
        $a = sprintf "%.1f", $a if $a ne ""; $d = sprintf "%.1f", $d if $d ne "";
        my $line = sprintf $fmt, $b, $t, $c, $a, $d, $v;
        print $sum $line; print $line;
        (my $label = "$b: $t" . ($c =~ m{/(.*)} ? " vs $1" : "")) =~ s/"/\x27/g;
        printf $dat "%d\t%s\t\"%s\"\n", $i++, $v, $label;
    }
' "$out"

n=$(wc -l <"$out/ratios.dat")
if command -v gnuplot >/dev/null && [ "$n" -gt 0 ]; then
    gnuplot <<GP || echo "chart failed" >&2
set terminal png size 1200,$((140 + 22 * n)) font ",9" noenhanced
set output "$out/ratios.png"
set title "evstore benchmarks $ts (commit $commit)\\nratios: > 1 means evstore faster (growth: faster than at the smallest size); medians of $BENCH_ROUNDS x ${BENCH_SECONDS}s"
set style fill solid 0.6
set xrange [0:*]
set yrange [$n:-1]
set ytics nomirror
set grid x
set key off
set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb "red" dt 2
plot "$out/ratios.dat" using 2:1:(0):2:(\$1-0.35):(\$1+0.35):ytic(3) with boxxyerror lc rgb "#3070b0", \
     "" using 2:1:(sprintf("%.2f", \$2)) with labels left offset 0.5,0
GP
fi
[ $report_only = 1 ] || {
    echo "commit $commit${dirty:+ (with uncommitted changes)}, $(date -u), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM"
    echo "BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS GROWTH_SIZES=\"$GROWTH_SIZES\" benchmarks: ${names[*]}"
    uptime
} >"$out/conditions.txt"
echo >&2
echo "results in $out (results.csv, summary.txt, ratios.png, one .txt per benchmark)" >&2
