#!/usr/bin/env bash
# Enforces the dependency rules of DESIGN.md §2: a module may import only the modules it is
# allowed to. Every `crate::X` path counts, in any form: `use crate::X::...`, a path in code,
# and each item of a `use crate::{X, Y::{..}}` group; `crate::rt` is the public name of
# `coro`. Comments are not code and do not count.
#
#   scripts/check-layers.sh [SRC_DIR]     check SRC_DIR (default: src); exit 1 on a violation
#   scripts/check-layers.sh --self-test   plant a violation of each rule in a scratch tree and
#                                         check that every one is caught (exit 1 otherwise)
set -euo pipefail
cd "$(dirname "$0")/.."

# module -> the crate modules it may import (besides itself). Modules not listed here (cli,
# server, lib.rs, main.rs) sit on top and may import anything; `exit` imports nothing.
declare -A allowed=(
  [proto]=""
  [sys]=""
  [log]=""
  [exit]=""
  [coro]="sys"
  [net]="sys"
  [scoreboard]="sys"
  [config]="net sys"
  [client]="coro proto"
  [api]="proto coro"
  [apps]="api coro client"
  [python]="api coro"
  # The worker also sets up the HTTP client of its handlers (the CAs it trusts) and, in a
  # Python worker, starts the Python side next to its I/O thread.
  [worker]="api proto coro net config scoreboard sys log exit client python"
  [master]="config net sys scoreboard log worker exit"
  [emperor]="config sys log exit"
)

# Every `crate::` module a Rust file refers to, one per line (comments stripped first).
crate_refs() {
  sed -e 's#//.*$##' "$1" | tr '\n' ' ' | awk '
    {
      text = $0
      while ((at = index(text, "crate::")) > 0) {
        text = substr(text, at + 7)
        if (substr(text, 1, 1) == "{") {
          # A group: the first segment of every item at depth 1.
          depth = 0; item = ""; expecting = 1
          for (i = 1; i <= length(text); i++) {
            c = substr(text, i, 1)
            if (c == "{") { depth++; if (depth == 1) continue }
            if (c == "}") { depth--; if (depth == 0) break; continue }
            if (depth == 1 && c == ",") { expecting = 1; continue }
            if (depth == 1 && expecting && c ~ /[a-z_]/) {
              match(substr(text, i), /^[a-z_][a-z0-9_]*/)
              print substr(text, i, RLENGTH)
              expecting = 0
              i += RLENGTH - 1
            }
          }
        } else if (match(text, /^[a-z_][a-z0-9_]*/)) {
          print substr(text, 1, RLENGTH)
        }
      }
    }'
}

# Checks the tree under $1; prints each violation; returns 1 if there is any.
check_tree() {
  local root=$1 status=0
  for module in "${!allowed[@]}"; do
    for path in "$root/$module" "$root/$module.rs"; do
      [ -e "$path" ] || continue
      while IFS= read -r file; do
        while IFS= read -r dep; do
          [ "$dep" = rt ] && dep=coro
          [ "$dep" = "$module" ] && continue
          case " ${allowed[$module]} " in
            *" $dep "*) ;;
            *)
              echo "layering: $file: $module must not import crate::$dep" >&2
              status=1
              ;;
          esac
        done < <(crate_refs "$file" | sort -u)
      done < <(find "$path" -name '*.rs' -type f)
    done
  done
  return $status
}

self_test() {
  local scratch failures=0
  scratch=$(mktemp -d /tmp/check-layers.XXXXXX)
  trap 'rm -rf "$scratch"' RETURN
  # Each case: a module, then the code planted in it; every one must be refused.
  local cases=(
    "proto|use crate::sys::fd;"
    "sys|pub(crate) use crate::exit;"
    "log|fn f() { crate::config::load(); }"
    "coro|use crate::{sys, proto::Vars};"
    "net|use crate::config::Config;"
    "scoreboard|use crate::net::addr::SocketSpec;"
    "config|use crate::api::Handler;"
    "client|use crate::api::Request;"
    "api|use crate::{\n    proto::Vars,\n    config::Config,\n};"
    "apps|use crate::sys::fd;"
    "python|use crate::worker::Shared;"
    "worker|use crate::master::Master;"
    "master|use crate::rt::spawn;"
    "master|use crate::{api::{Request, Response}, sys};"
    "emperor|use crate::worker::run;"
  )
  local case module code
  for case in "${cases[@]}"; do
    module=${case%%|*}
    code=${case#*|}
    rm -rf "${scratch:?}"/*
    mkdir -p "$scratch/$module"
    printf '%b\n' "$code" >"$scratch/$module/planted.rs"
    if check_tree "$scratch" 2>/dev/null; then
      echo "self-test: not caught: in $module: $code" >&2
      failures=1
    fi
  done
  # And what is allowed passes, comments included.
  rm -rf "${scratch:?}"/*
  mkdir -p "$scratch/master"
  printf '%s\n' "use crate::{config::Config, sys::fd};" "// crate::api in a comment" \
    "fn f() { crate::worker::run(); }" >"$scratch/master/fine.rs"
  if ! check_tree "$scratch"; then
    echo "self-test: an allowed import was refused" >&2
    failures=1
  fi
  [ "$failures" = 0 ] && echo "check-layers self-test: every planted violation was caught"
  return $failures
}

if [ "${1:-}" = --self-test ]; then
  self_test
else
  check_tree "${1:-src}"
fi
