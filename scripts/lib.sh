# Shared pieces of the scripts in this folder; source it, do not run it.
#
#   apt_install PKG...   install Debian packages without starting their services (as root)
#   start_workdir NAME   make $work (a temp dir) and a trap that, on exit, kills every pid in
#                        $pids (SIGKILL) and removes $work
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
}

_stop_everything() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
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
