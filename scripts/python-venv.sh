#!/usr/bin/env bash
# Makes (once) the virtualenv the Python integration tests load apps from: gevent, Flask,
# Django and requests from PyPI on the system's python3, plus prometheus_client, whose parser
# the stats tests read `/metrics` with. Prints the venv's path.
#
#   scripts/python-venv.sh [DIR]     default DIR: target/python-venv
#
# The venv is complete when its `.complete` marker names exactly the packages below: adding
# one changes the list, so an older venv is made again.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-target/python-venv}
packages="gevent flask django requests prometheus_client"
if [ "$(cat "$venv/.complete" 2>/dev/null)" != "$packages" ]; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086 # the list is split into arguments on purpose
  "$venv/bin/pip" install --quiet --disable-pip-version-check $packages >&2
  echo "$packages" >"$venv/.complete"
fi
cd "$venv" && pwd
