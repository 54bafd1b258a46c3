#!/usr/bin/env bash
# Enforces the dependency rules of DESIGN.md §2: a module may import only the modules below it.
# Prints every forbidden `crate::` import and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."

# module -> modules it must not import
declare -A forbidden=(
  [proto]="api apps cli client config coro emperor log master net scoreboard sys worker"
  [sys]="api apps cli config coro emperor log master net proto scoreboard worker"
  [log]="api apps cli config coro emperor master net proto scoreboard sys worker"
  [coro]="api apps cli client config emperor log master net proto scoreboard worker"
  [api]="apps cli client config emperor master net scoreboard worker"
  [client]="api apps cli config emperor log master net scoreboard sys worker"
  [apps]="cli config emperor master net proto scoreboard sys worker"
  [worker]="cli emperor master"
  [master]="api apps cli coro emperor proto"
  [emperor]="cli master worker apps api coro"
)

status=0
for module in "${!forbidden[@]}"; do
  for path in "src/$module" "src/$module.rs"; do
    [ -e "$path" ] || continue
    for dep in ${forbidden[$module]}; do
      if grep -rnE "crate::$dep(::|\b)" "$path" 2>/dev/null; then
        echo "layering: $module must not import crate::$dep" >&2
        status=1
      fi
    done
  done
done
exit $status
