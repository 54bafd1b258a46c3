#!/usr/bin/env bash
# Clients that do not play along, against the release binary, and what they cost the others:
#
#  1. 100 slowloris connections (a request head begun, one more byte every second) on a worker
#     with `async = 100`: how long 20 normal requests take beside them.
#  2. 20 stats clients that connect and send nothing (`stats-http`): how long a HUP takes
#     from the signal to the new generation's ready line.
#
#   scripts/hostile-clients.sh [BINARY]
#
# BINARY defaults to target/release/rcontainer (built first); pass an older build to compare.
# Everything runs on 127.0.0.1, is bounded in time, and every process started is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

binary=${1:-}
if [ -z "$binary" ]; then
  cargo build --release --quiet
  binary=target/release/rcontainer
fi
start_workdir rcontainer-hostile
port=$(free_port)
cat >"$work/app.ini" <<INI
[rcontainer]
http-socket = 127.0.0.1:$port
processes = 1
async = 100
module = hello
stats = $work/stats.sock
stats-http = true
disable-logging = true
INI
"$binary" --ini "$work/app.ini" >"$work/rc.log" 2>&1 &
master=$!
pids+=("$master")
wait_port "$port"

python3 - "$port" "$work/stats.sock" "$work/rc.log" "$master" <<'PY'
import os, signal, socket, sys, time

port, stats_path, log_path, master = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

def get():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return data.startswith(b"HTTP/1.1 200")

# 1. slowloris
slow = []
for _ in range(100):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    slow.append(s)
worst, answered, tried = 0.0, 0, 0
deadline = time.time() + 25
for i in range(20):
    tried += 1
    for s in slow:
        try:
            s.send(b"a")
        except OSError:
            pass
    start = time.time()
    try:
        answered += get()
    except OSError:
        pass
    worst = max(worst, time.time() - start)
    if time.time() > deadline:
        break
print(f"slowloris: 100 connections on async=100; {answered} of {tried} normal requests "
      f"answered (20 tried unless 25 s ran out), slowest {worst * 1000:.1f} ms")
for s in slow:
    s.close()

# 2. silent stats clients
def ready_lines():
    with open(log_path, errors="replace") as f:
        return f.read().count("rcontainer ready")

silent = []
for _ in range(20):
    s = socket.socket(socket.AF_UNIX)
    s.connect(stats_path)
    silent.append(s)
time.sleep(0.2)
before = ready_lines()
start = time.time()
os.kill(master, signal.SIGHUP)
while ready_lines() <= before and time.time() - start < 60:
    time.sleep(0.005)
took = time.time() - start
done = ready_lines() > before
print(f"stats: 20 silent clients; HUP to the new ready line "
      f"{'%.3f s' % took if done else 'not within 60 s'}")
PY
kill -TERM "$master"
