#!/usr/bin/env bash
# Hello-world throughput over HTTP: rcontainer (1 worker) against Debian's uWSGI (1 process,
# python3 plugin) and nginx `return 200`, measured alternately in the same run.
#
# A hello-world run on this 2-core machine is bound by the machine (wrk and the kernel share the
# cores), and the machine's speed drifts between minutes: read the ratios to nginx, taken round
# by round, not the absolute figures.
#
#   scripts/bench-e2e.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Everything runs on 127.0.0.1, bounded in time; every process started is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
conns=${3:-50}

source scripts/lib.sh
need() { command -v "$1" >/dev/null 2>&1; }
PATH="$PATH:/usr/sbin"
if ! need wrk || ! need nginx || ! need uwsgi || [ ! -e /usr/lib/uwsgi/plugins/python3_plugin.so ]; then
  apt_install wrk nginx uwsgi-core uwsgi-plugin-python3
fi

cargo build --release --quiet
bin=target/release/rcontainer

start_workdir rcontainer-bench

# nginx: `return 200`, one process.
nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$nginx_port; location / { return 200 "Hello World"; } }
}
CONF
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" &
pids+=($!)

# rcontainer: one worker, the built-in hello app.
rc_port=$(free_port)
cat >"$work/rc.ini" <<INI
[rcontainer]
http-socket = 127.0.0.1:$rc_port
processes = 1
async = 100
module = hello
disable-logging = true
INI
"$bin" --ini "$work/rc.ini" >"$work/rc.log" 2>&1 &
pids+=($!)

# uWSGI: one process, a WSGI hello world, request logging off.
uwsgi_port=$(free_port)
cat >"$work/hello.py" <<'PY'
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [b"Hello World"]
PY
# http11-socket keeps connections alive (wrk's default) when the app sends Content-Length.
uwsgi --plugin python3 --http11-socket "127.0.0.1:$uwsgi_port" --wsgi-file "$work/hello.py" \
  --master --processes 1 --disable-logging >"$work/uwsgi.log" 2>&1 &
pids+=($!)

wait_port "$nginx_port"; wait_port "$rc_port"; wait_port "$uwsgi_port"

run_wrk() { # name port -> "req/s p50 p99"
  wrk -t1 -c"$conns" -d"${seconds}s" --latency "http://127.0.0.1:$2/" 2>&1 |
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print rps, p50, p99}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

printf '%-6s %-11s %12s %9s %9s %9s\n' round server "req/s" p50 p99 "vs nginx"
for round in $(seq "$rounds"); do
  read -r n_rps n50 n99 < <(run_wrk nginx "$nginx_port")
  read -r r_rps r50 r99 < <(run_wrk rcontainer "$rc_port")
  read -r u_rps u50 u99 < <(run_wrk uwsgi "$uwsgi_port")
  printf '%-6s %-11s %12s %9s %9s %9s\n' "$round" nginx "$n_rps" "$n50" "$n99" 1.00
  printf '%-6s %-11s %12s %9s %9s %9s\n' "$round" rcontainer "$r_rps" "$r50" "$r99" "$(ratio "$r_rps" "$n_rps")"
  printf '%-6s %-11s %12s %9s %9s %9s\n' "$round" uwsgi "$u_rps" "$u50" "$u99" "$(ratio "$u_rps" "$n_rps")"
done
