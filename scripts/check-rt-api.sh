#!/usr/bin/env bash
# Checks what `cargo doc` shows of the handler API: `rcontainer::rt` lists exactly the items
# below (DESIGN §8 and what their signatures name), and the benches' door (`__bench`) is not
# documented. Run after `cargo doc --no-deps`; CI does. Reads rustdoc's sidebar index, which
# every doc build rewrites (the per-item pages of removed items may linger in target/doc).
set -euo pipefail
cd "$(dirname "$0")/.."

expected='enum Addr
enum CancelReason
enum JoinError
fn catch_panic
fn channel
fn join_all
fn offload
fn sleep
fn sleep_until
fn spawn
fn timeout
fn try_spawn
fn yield_now
struct CoStream
struct Elapsed
struct JoinHandle
struct Mutex
struct MutexGuard
struct Permit
struct Receiver
struct Semaphore
struct SendError
struct Sender
struct TcpStream
struct UnixStream'

target_dir=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
doc="$target_dir/doc/rcontainer"
[ -f "$doc/rt/sidebar-items.js" ] || {
  echo "check-rt-api: $doc/rt/sidebar-items.js missing: run cargo doc --no-deps first" >&2
  exit 1
}

# window.SIDEBAR_ITEMS = {"enum":["Addr",...],"fn":[...],...};  ->  "enum Addr" lines
actual=$(grep -o '"[a-z]*":\[[^]]*\]' "$doc/rt/sidebar-items.js" |
  while IFS= read -r group; do
    kind=${group%%\":*}
    kind=${kind#\"}
    names=${group#*:\[}
    names=${names%\]}
    tr ',' '\n' <<<"$names" | tr -d '"' | sed "/^$/d; s/^/$kind /"
  done | LC_ALL=C sort)

status=0
if [ "$actual" != "$(LC_ALL=C sort <<<"$expected")" ]; then
  echo "check-rt-api: rcontainer::rt is not the handler API (< expected, > documented):" >&2
  diff <(LC_ALL=C sort <<<"$expected") <(printf '%s\n' "$actual") >&2 || true
  status=1
fi
if grep -q '__bench' "$doc/sidebar-items.js" "$doc/index.html"; then
  echo "check-rt-api: the benches' __bench module shows in the docs" >&2
  status=1
fi
[ "$status" = 0 ] && echo "check-rt-api: rt lists exactly the handler API"
exit "$status"
