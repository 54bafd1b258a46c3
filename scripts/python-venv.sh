#!/usr/bin/env bash
# Makes (once) the virtualenv the Python integration tests load apps from: gevent and Flask
# from PyPI on the system's python3. Prints the venv's path.
#
#   scripts/python-venv.sh [DIR]     default DIR: target/python-venv
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-target/python-venv}
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check gevent flask >&2
  touch "$venv/.complete"
fi
cd "$venv" && pwd
