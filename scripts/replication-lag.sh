#!/bin/bash
# Replication at 100 tx/s for 20 s to a local set: lag per segment, the replicator's CPU and peak
# RSS, the writer's commits and busy checkpoints (docs/replication.md). Run after node build.mjs.
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d); mkdir $D/set
python3 "$ROOT"/testkit/replwriter.py $D/db.db '{"tps":100}' > $D/w.out &
WP=$!
sleep 0.5
HOME=$D node $ROOT/dist/blufio.mjs replicate $D/set/ --db $D/db.db --json 2> $D/events &
RP=$!
sleep 20
kill -TERM $WP; sleep 0.3
T1=$(awk '{print $14+$15}' /proc/$RP/stat)
RSS=$(grep VmHWM /proc/$RP/status)
kill -TERM $RP; wait $RP || true
echo "replicator cpu ticks (1/100 s) over ~20 s: $T1 ; $RSS"
grep -o '"lagMs":[0-9]*' $D/events | cut -d: -f2 | sort -n | awk '{a[NR]=$1} END {print "segments", NR, "lag p50", a[int(NR*0.5)], "p99", a[int(NR*0.99)], "max", a[NR]}'
tail -1 $D/w.out
ls $D/set | wc -l
rm -rf $D
