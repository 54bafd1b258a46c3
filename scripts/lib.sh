# Shared pieces of the scripts in this folder; source it, do not run it.
#
#   apt_install PKG...   install Debian packages without starting their services (as root)
#   start_workdir NAME   make $work (a temp dir) and a trap that, on exit (INT and TERM too),
#                        kills every pid in $pids with its process group (SIGKILL) and removes
#                        $work (keeps it when $keep_work is set)
#   start_bg NAME CMD... run CMD in the background in a process group of its own, so that its
#                        children (an nginx or uWSGI master's workers) are stopped with it;
#                        output to $work/NAME.log; its pid in $bg_pid and in $pids
#   stop_bg PID          stop what start_bg started now (SIGKILL to the group) and reap it
#   free_port            print a loopback TCP port that was free a moment ago
#   wait_port PORT       wait (at most 10 s) until something accepts on 127.0.0.1:PORT

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "needs these Debian packages (run as root to install them): $*" >&2
    exit 1
  fi
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

start_workdir() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  trap _stop_everything EXIT
  trap 'exit 130' INT TERM
}

_stop_everything() {
  for pid in "${pids[@]}"; do _kill_group "$pid"; done
  wait 2>/dev/null || true
  if [ -n "${keep_work:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}

# The group first (a no-op for a pid that leads none), then the pid itself.
_kill_group() {
  kill -9 -- "-$1" 2>/dev/null || true
  kill -9 "$1" 2>/dev/null || true
}

start_bg() {
  local name=$1
  shift
  # A background job of a script is no group leader, so setsid makes the new group in place
  # (no fork): $! is the group's id.
  setsid "$@" >"$work/$name.log" 2>&1 &
  bg_pid=$!
  pids+=("$bg_pid")
}

stop_bg() {
  local kept=() pid
  _kill_group "$1"
  wait "$1" 2>/dev/null || true
  # Its children too (they hold the listening socket until they are gone), at most 10 s.
  for _ in $(seq 200); do
    kill -0 -- "-$1" 2>/dev/null || break
    sleep 0.05
  done
  for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
  pids=("${kept[@]}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listening on port $1" >&2
  tail -n 20 "$work"/*.log >&2 2>/dev/null || true
  exit 1
}
