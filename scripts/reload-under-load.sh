#!/usr/bin/env bash
# Zero-downtime check under load: wrk drives HTTP traffic at one rcontainer instance while this
# script issues 10 graceful reloads (HUP), 10 chain reloads (FIFO `c`), 5 touch-reloads, a
# storm of 30 HUPs 10 ms apart, and 2 reloads that cannot work (a busy stats port, a pidfile in
# a missing directory: both must be refused while the old instance serves on). It prints what
# wrk saw: requests, errors (socket errors and non-2xx answers) and the worst latency.
#
#   scripts/reload-under-load.sh [CONNECTIONS] [PROCESSES]
#
# Everything runs on 127.0.0.1 and is bounded in time; every process started is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-50}
processes=${2:-2}

source scripts/lib.sh
command -v wrk >/dev/null || apt_install wrk

cargo build --release --quiet
start_workdir rcontainer-reload
port=$(free_port)
cat >"$work/app.ini" <<INI
[rcontainer]
http-socket = 127.0.0.1:$port
processes = $processes
async = 200
module = hello
master-fifo = $work/fifo
touch-reload = $work/reload.touch
pidfile = $work/app.pid
disable-logging = true
INI
target/release/rcontainer --ini "$work/app.ini" >"$work/rc.log" 2>&1 &
master=$!
pids+=("$master")

ready_lines() { grep -c "rcontainer ready" "$work/rc.log" || true; }
wait_ready() { # wait until the ready line count reaches $1 (at most 20 s)
  for _ in $(seq 200); do
    [ "$(ready_lines)" -ge "$1" ] && return 0
    sleep 0.1
  done
  echo "instance not ready (wanted $1 ready lines):" >&2
  tail -20 "$work/rc.log" >&2
  exit 1
}
wait_ready 1

duration=70
wrk -t1 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$port/" >"$work/wrk.txt" 2>&1 &
wrk_pid=$!
pids+=("$wrk_pid")
sleep 2

expected=1
for i in $(seq 10); do
  kill -HUP "$master"
  expected=$((expected + 1)); wait_ready "$expected"; sleep 0.5
done
chain_done() { grep -c "chain reload of" "$work/rc.log" || true; }
for i in $(seq 10); do
  printf c >"$work/fifo"
  sleep 1.5
done
for i in $(seq 5); do
  sleep 1.1 # the master looks at touch files once a second
  touch "$work/reload.touch"
  expected=$((expected + 1)); wait_ready "$expected"; sleep 0.5
done
# A storm: 30 HUPs 10 ms apart (they coalesce into a few re-execs).
before_storm=$(ready_lines)
for i in $(seq 30); do
  kill -HUP "$master"
  sleep 0.01
done
wait_ready $((before_storm + 1)); sleep 3
expected=$(ready_lines)
storm_execs=$((expected - before_storm))
# Reloads that cannot work: refused, the old configuration serves on.
cp "$work/app.ini" "$work/app.ini.good"
python3 -c 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)' >"$work/busy.port" &
pids+=("$!")
for _ in $(seq 50); do [ -s "$work/busy.port" ] && break; sleep 0.1; done
busy=$(cat "$work/busy.port")
refusals() { grep -c "reload refused" "$work/rc.log" || true; }
for extra in "stats = 127.0.0.1:$busy" "pidfile = $work/missing/app.pid"; do
  refused=$(refusals)
  { cat "$work/app.ini.good"; echo "$extra"; } >"$work/app.ini"
  kill -HUP "$master"
  for _ in $(seq 100); do [ "$(refusals)" -gt "$refused" ] && break; sleep 0.1; done
  sleep 1
done
cp "$work/app.ini.good" "$work/app.ini"
echo "reloads issued: 10 HUP, 10 chain ($(chain_done) logged), 5 touch, a storm of 30 HUPs ($storm_execs re-execs), 2 that cannot work ($(refusals) refused); master pid $master unchanged: $(cat "$work/app.pid"), alive: $(kill -0 "$master" && echo yes)"

wait "$wrk_pid" || true
cat "$work/wrk.txt"
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
errors=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt")
worst=$(awk '/Latency/ && !/Distribution/ {print $4; exit}' "$work/wrk.txt")
echo
echo "summary: requests=$requests socket_errors=${errors:-0} non_2xx=${non2xx:-0} worst_latency=$worst"
kill -TERM "$master"
