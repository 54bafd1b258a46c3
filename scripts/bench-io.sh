#!/usr/bin/env bash
# The seed scenario, side by side in one run: a handler that calls a slow upstream API.
#
#   upstream (d): nginx + echo module, `echo_sleep 0.1` (answers after 100 ms), hit directly
#   (a) rcontainer, built-in `fetch` app, 1 worker, async 1000, upstream through rcontainer::client
#   (b) Debian's uWSGI + gevent plugin (--http-socket, no keep-alive), 1 process, gevent 1000,
#       a WSGI app using http.client under monkey patching
#   (c) gunicorn -k gevent (pip, in a venv), 1 worker, 1000 worker-connections, same app
#
# wrk at 100 and 1000 connections, SECONDS each (10 by default), after a short warm-up. For each
# run: req/s, p50, p99, errors (socket errors + non-2xx), the worker's peak RSS (VmHWM), and each
# as a fraction of (d). 100 ms of upstream latency caps a run at CONNS*10 req/s.
#
#   scripts/bench-io.sh [SECONDS]
#
# Installs its peers when missing (needs root: apt-get and pip). Everything listens on
# 127.0.0.1; every process it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
# BENCH_SERVERS limits the run to some of: rcontainer uwsgi-gevent gunicorn-gevent (the
# upstream is always measured: it is the reference).
servers="upstream ${BENCH_SERVERS:-rcontainer uwsgi-gevent gunicorn-gevent}"
venv=${BENCH_VENV:-/opt/rcontainer-bench-venv}
PATH="$PATH:/usr/sbin"

source scripts/lib.sh
need() { command -v "$1" >/dev/null 2>&1; }
have_peers() {
  need wrk && need nginx && need uwsgi &&
    [ -e /usr/lib/nginx/modules/ngx_http_echo_module.so ] &&
    [ -e /usr/lib/uwsgi/plugins/python3_plugin.so ] &&
    [ -e /usr/lib/uwsgi/plugins/gevent_python3_plugin.so ] &&
    /usr/bin/python3 -c 'import gevent' 2>/dev/null
}
if ! have_peers; then
  apt_install wrk nginx libnginx-mod-http-echo uwsgi-core uwsgi-plugin-python3 \
    uwsgi-plugin-gevent-python3 python3-gevent python3-venv
fi
if ! "$venv/bin/python" -c "import gunicorn, gevent, packaging" 2>/dev/null; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q gunicorn gevent packaging
fi

# Thousands of sockets per process (clients, servers and upstream connections): as many as
# the hard limit allows, at least 8192.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 8192 ]; then
  ulimit -n 8192 || { echo "needs ulimit -n >= 8192" >&2; exit 1; }
fi

cargo build --release --quiet
bin=target/release/rcontainer

start_workdir rcontainer-bench-io
# The one child of $1 (the worker of a master process).
child_of() {
  local kids
  for _ in $(seq 50); do
    kids=$(cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$' | head -1 || true)
    [ -n "$kids" ] && { echo "$kids"; return; }
    sleep 0.1
  done
  echo "$1"
}
peak_rss_kib() { awk '/^VmHWM:/ {print $2}' /proc/"$1"/status 2>/dev/null || echo 0; }

# (d) the upstream: nginx, one process, answers after 100 ms.
up_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
daemon off;
master_process off;
worker_rlimit_nofile 16384;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$up_port backlog=4096;
    location / { default_type text/plain; echo_sleep 0.1; echo "search results"; }
  }
}
CONF
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" &
up_pid=$!
pids+=("$up_pid")

# (a) rcontainer: the built-in fetch app.
rc_port=$(free_port)
cat >"$work/rc.ini" <<INI
[rcontainer]
http-socket = 127.0.0.1:$rc_port
processes = 1
async = 1000
listen = 4096
module = fetch
fetch-url = http://127.0.0.1:$up_port/
disable-logging = true
INI
"$bin" --ini "$work/rc.ini" >"$work/rc.log" 2>&1 &
rc_pid=$!
pids+=("$rc_pid")

# (b), (c): the same WSGI app, one upstream call per request with http.client.
cat >"$work/app.py" <<PY
import http.client

UPSTREAM = ("127.0.0.1", $up_port)

def application(environ, start_response):
    conn = http.client.HTTPConnection(*UPSTREAM, timeout=10)
    try:
        conn.request("GET", "/?" + environ.get("QUERY_STRING", ""))
        resp = conn.getresponse()
        body = resp.read()
        status = "%d %s" % (resp.status, resp.reason)
    except OSError:
        status, body = "502 Bad Gateway", b"upstream failed\n"
    finally:
        conn.close()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
PY

uw_port=$(free_port)
# --http-socket: uWSGI 2.0's --http11-socket (keep-alive) serializes requests under gevent
# (about 10 req/s here), so each request gets its own connection, closed after the answer.
uwsgi --plugins python3,gevent_python3 --http-socket "127.0.0.1:$uw_port" \
  --wsgi-file "$work/app.py" --master --processes 1 --gevent 1000 --gevent-monkey-patch \
  --listen 4096 --disable-logging --max-fd 16384 --add-header "Connection: close" >"$work/uwsgi.log" 2>&1 &
uw_pid=$!
pids+=("$uw_pid")

gu_port=$(free_port)
"$venv/bin/gunicorn" -k gevent -w 1 --worker-connections 1000 --backlog 4096 \
  -b "127.0.0.1:$gu_port" --chdir "$work" --log-level warning app:application \
  >"$work/gunicorn.log" 2>&1 &
gu_pid=$!
pids+=("$gu_pid")

wait_port "$up_port"; wait_port "$rc_port"; wait_port "$uw_port"; wait_port "$gu_port"
declare -A port=([upstream]=$up_port [rcontainer]=$rc_port [uwsgi-gevent]=$uw_port [gunicorn-gevent]=$gu_port)
declare -A worker=(
  [upstream]=$up_pid
  [rcontainer]=$(child_of "$rc_pid")
  [uwsgi-gevent]=$(child_of "$uw_pid")
  [gunicorn-gevent]=$(child_of "$gu_pid")
)
for name in $servers; do
  body=$(curl -s "http://127.0.0.1:${port[$name]}/?q=check" || true)
  [ "$body" = "search results" ] || { echo "$name answers '$body', not the upstream's body" >&2; tail "$work"/*.log >&2; exit 1; }
done

# Prints "req/s p50_ms p99_ms errors" for $1 at $2 connections for $3 seconds.
run_wrk() {
  wrk -t2 -c"$2" -d"$3s" --timeout 5s --latency "http://127.0.0.1:${port[$1]}/?q=rust" 2>&1 |
    awk '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
      /Requests\/sec/ { rps = $2 }
      /^ +50%/ { p50 = ms($2) }
      /^ +99%/ { p99 = ms($2) }
      /Socket errors/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
      /Non-2xx/ { errors += $5 }
      END { printf "%.0f %.1f %.1f %d\n", rps, p50, p99, errors }'
}

frac() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo "upstream answers after 100 ms; wrk -t2, ${seconds}s per run; fractions are of the upstream hit directly"
printf '%-6s %-16s %9s %9s %9s %7s %9s | %7s %7s %7s %7s\n' \
  conns server "req/s" "p50 ms" "p99 ms" errors "rss KiB" "req/s" p50 p99 rss
for conns in 100 1000; do
  declare -A rps=() p50=() p99=() errs=() rss=()
  for name in $servers; do
    run_wrk "$name" "$conns" 2 >/dev/null # warm-up: pools filled, greenlets and coroutines made
    read -r rps[$name] p50[$name] p99[$name] errs[$name] < <(run_wrk "$name" "$conns" "$seconds")
    rss[$name]=$(peak_rss_kib "${worker[$name]}")
  done
  for name in $servers; do
    printf '%-6s %-16s %9s %9s %9s %7s %9s | %7s %7s %7s %7s\n' "$conns" "$name" \
      "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" "${errs[$name]}" "${rss[$name]}" \
      "$(frac "${rps[$name]}" "${rps[upstream]}")" "$(frac "${p50[$name]}" "${p50[upstream]}")" \
      "$(frac "${p99[$name]}" "${p99[upstream]}")" "$(frac "${rss[$name]}" "${rss[upstream]}")"
  done
  best_peer=$(awk -v a="${rps[uwsgi-gevent]:-0}" -v b="${rps[gunicorn-gevent]:-0}" 'BEGIN { print (a > b ? a : b) }')
  [ -n "${rps[rcontainer]:-}" ] && echo "       rcontainer / better gevent peer at $conns connections: $(frac "${rps[rcontainer]}" "$best_peer")x"
  unset rps p50 p99 errs rss
done
