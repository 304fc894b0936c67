#!/usr/bin/env bash
# Multi-core scaling of Sluice's fan-out, for a 16-core device run.
#
# Runs `sluice-bench fanout` (plain RTP, 1 publisher) at 1, 2, 4 and 8 SFU workers with a fixed
# number of subscribers per worker (video + audio), then one audio-only run with 10,000
# subscribers, plus one `limit` run for the machine's ceiling. Workers sit on the last N cores
# (`--workers`), the load generator on the first G cores (`--gen-threads`), G sized so no
# generator thread should pass ~70 % busy (check `gen_busy` in the table: a run whose generator
# was the bottleneck says nothing about the SFU).
#
# Output: one JSON line per run in $OUT/scale.jsonl ({"run", "workers", "gen_threads", "rc",
# "result": <sluice-bench --json object>}), each run's stderr in $OUT/scale-<run>.log, and a
# summary table on stdout (also $OUT/scale-summary.txt).
#
# Binary: bench/device/bin/sluice-bench, else target/release/sluice-bench, else $SLUICE_BENCH.
# Bounds: every run is killed after RUN_TIMEOUT (25 s); the whole script stays under ~6 min.
#
# Knobs (environment): SCALE_SMOKE=1 (workers 1 only, 50 subscribers, 3 s windows: runs on a
# 2-core machine), SUBS_PER_WORKER (400), WORKERS ("1 2 4 8"), AUDIO_SUBS (10000),
# AUDIO_WORKERS (largest of WORKERS that fits), DURATION (5), WARMUP (1), RUN_TIMEOUT (25),
# AUDIO_DURATION (3: its setup, 10,000 sessions and subscriptions, takes most of its 25 s),
# SUBS_PER_GEN_THREAD (video+audio subscribers one generator thread receives for, 600),
# EXTRA_ARGS (appended to every fanout run, e.g. "--io socket").
set -u

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${SLUICE_BENCH:-}"
for c in "$here/bin/sluice-bench" "$root/target/release/sluice-bench"; do
    if [ -z "$bin" ] && [ -x "$c" ]; then bin="$c"; fi
done
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "scale.sh: no sluice-bench binary (bench/device/bin/, target/release/ or \$SLUICE_BENCH)" >&2
    exit 2
fi

out="${OUT:-$root/scale-out}"
mkdir -p "$out"
jsonl="$out/scale.jsonl"
: > "$jsonl"

cores="$(nproc)"
if [ "${SCALE_SMOKE:-0}" = 1 ]; then
    workers_list="${WORKERS:-1}"
    per_worker="${SUBS_PER_WORKER:-50}"
    audio_subs="${AUDIO_SUBS:-50}"
    duration="${DURATION:-3}"
else
    workers_list="${WORKERS:-1 2 4 8}"
    per_worker="${SUBS_PER_WORKER:-400}"
    audio_subs="${AUDIO_SUBS:-10000}"
    duration="${DURATION:-5}"
fi
warmup="${WARMUP:-1}"
audio_duration="${AUDIO_DURATION:-3}"
run_timeout="${RUN_TIMEOUT:-25}"
per_gen="${SUBS_PER_GEN_THREAD:-600}"

# One socket per generator subscriber: 10,000 subscribers need more than the usual 1,024 fds.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export SLUICE_BENCH_QUIET=1

# Generator threads for S subscribers beside W workers: one per SUBS_PER_GEN_THREAD
# (video+audio; audio-only subscribers receive ~1/4 the packets), at least 1, at most the
# cores the workers leave.
gen_threads() { # subs workers weight(1 = video+audio, 4 = audio-only)
    local g=$(( ($1 + $3 * per_gen - 1) / ($3 * per_gen) ))
    local free=$(( cores - $2 ))
    [ "$g" -lt 1 ] && g=1
    [ "$g" -gt "$free" ] && g="$free"
    [ "$g" -lt 1 ] && g=1
    echo "$g"
}

# run NAME WORKERS GEN_THREADS sluice-bench-args...
run() {
    local name="$1" w="$2" g="$3"
    shift 3
    echo "scale.sh: $name: workers $w, generator threads $g: sluice-bench $*" >&2
    local res rc
    res="$(timeout -k 5 "$run_timeout" "$bin" "$@" --json 2> "$out/scale-$name.log")"
    rc=$?
    res="$(printf '%s' "$res" | tail -n 1)"
    [ -z "$res" ] && res=null
    printf '{"run":"%s","workers":%s,"gen_threads":%s,"rc":%s,"result":%s}\n' \
        "$name" "$w" "$g" "$rc" "$res" >> "$jsonl"
}

start=$(date +%s)
run limit 0 0 limit --duration 3

for w in $workers_list; do
    if [ "$w" -ge "$cores" ] && [ "$cores" -gt 1 ]; then
        echo "scale.sh: skipping $w workers: only $cores cores" >&2
        continue
    fi
    subs=$(( w * per_worker ))
    g="$(gen_threads "$subs" "$w" 1)"
    run "av-w$w" "$w" "$g" fanout --no-limit --workers "$w" --gen-threads "$g" \
        --subscribers "$subs" --publishers 1 --warmup "$warmup" ${EXTRA_ARGS:-} --duration "$duration"
done

aw="${AUDIO_WORKERS:-}"
if [ -z "$aw" ]; then
    for w in $workers_list; do
        if [ "$w" -lt "$cores" ] || [ "$cores" -le 1 ]; then aw="$w"; fi
    done
fi
g="$(gen_threads "$audio_subs" "$aw" 4)"
run "audio-w$aw" "$aw" "$g" fanout --no-limit --audio-only --workers "$aw" --gen-threads "$g" \
    --subscribers "$audio_subs" --publishers 1 --warmup "$warmup" ${EXTRA_ARGS:-} --duration "$audio_duration"
echo "scale.sh: done in $(( $(date +%s) - start )) s; lines in $jsonl" >&2

summarize() {
python3 - "$jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
limit = None
base = None
print(f"{'run':<12} {'workers':>7} {'gen':>4} {'subs':>6} {'delivered pps':>14} {'pps/worker':>11} "
      f"{'eff vs 1w':>9} {'loss %':>8} {'p99 ms':>8} {'gen busy':>8} {'sfu busy':>8} "
      f"{'setup s':>7} {'sfu drops':>9} {'retries':>7}  note")
# Not drops: counters the workers report in the same map (see shard/counters.rs).
DELAYS = {"send_retry", "send_stalls", "early_drains", "tx_slots_busy", "gso_messages", "slow_path",
          "dtls_failed"}
NOT_DROPS = ("pacer_", "lat_", "map_", "registry_", "unsignaled_ssrc_")
for r in rows:
    res = r.get("result") or {}
    if r["run"] == "limit":
        l = (res.get("limit") or {})
        limit = l.get("rx_pps")
        print(f"{'limit':<12} {'':>7} {'':>4} {'':>6} {limit if limit is not None else 'n/a':>14}"
              f"  (sendmmsg -> recvmmsg, 1,200 B; rc {r['rc']})")
        continue
    f = res.get("fanout")
    if not f:
        print(f"{r['run']:<12} {r['workers']:>7} {r['gen_threads']:>4}  FAILED rc {r['rc']}: "
              f"{res.get('error', 'no result (timeout?)')}")
        continue
    w = max(r["workers"], 1)
    pps = f["delivered_pps"]
    per = pps / w
    if r["run"].startswith("av-") and base is None and w == 1:
        base = per
    eff = f"{per / base:.2f}" if base and r["run"].startswith("av-") else ""
    p99 = (f["latency_us"]["all"]["p99"] or 0) / 1000
    sfu = sum(x["busy"] for x in f["sfu_worker_cpu"])
    gen = f["generator"]
    note = "" if gen["verdict"].startswith("not") else "GENERATOR-LIMITED"
    drops = sum(v for w in f["sfu_worker_stats"] for k, v in (w.get("dropped") or {}).items()
                if k not in DELAYS and not k.startswith(NOT_DROPS))
    retries = sum((w.get("dropped") or {}).get("send_retry", 0) for w in f["sfu_worker_stats"])
    print(f"{r['run']:<12} {r['workers']:>7} {r['gen_threads']:>4} {f['config']['subscribers']:>6} "
          f"{pps:>14,.0f} {per:>11,.0f} {eff:>9} {f['loss'] * 100:>8.3f} {p99:>8.2f} "
          f"{gen['busy']:>8.2f} {sfu:>8.2f} {f['setup_s']:>7.1f} {drops:>9} {retries:>7}  {note}")
if limit:
    print(f"limit {limit:,.0f} pps (one core pair); pps/worker / limit shows each worker's fanout/limit")
PY
}
if command -v python3 > /dev/null; then
    summarize | tee "$out/scale-summary.txt"
else
    echo "scale.sh: python3 missing; raw results in $jsonl" >&2
fi
