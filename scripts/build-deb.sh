#!/usr/bin/env bash
# Builds the Debian packages with cargo-deb ([package.metadata.deb] in Cargo.toml):
#   rcontainer         the stock binary
#   rcontainer-python  the same with the python feature, linked to Debian's libpython3
# Release builds in target/release (cargo rebuilds only what changed: the crate itself when
# the features switch), binaries stripped (the release profile keeps line tables). The stock
# build goes last, so target/release/rcontainer is the stock binary afterwards.
# Prints the paths of the two packages, the stock one first, one a line, on stdout.
#
#   scripts/build-deb.sh          needs cargo-deb (cargo install cargo-deb --locked) and, for
#                                 the python package, python3-dev
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  echo "build-deb: needs cargo-deb (cargo install cargo-deb --locked --version 3.8.0)" >&2
  exit 1
fi

# cargo deb prints the path of the package it made on stdout, its progress on stderr.
python_deb=$(PYO3_PYTHON="${PYO3_PYTHON:-/usr/bin/python3}" \
  cargo deb --locked --strip --variant python)
stock_deb=$(cargo deb --locked --strip)

for deb in "$stock_deb" "$python_deb"; do
  [ -f "$deb" ] || { echo "build-deb: cargo deb made no $deb" >&2; exit 1; }
  echo "$deb"
done
