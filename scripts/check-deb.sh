#!/usr/bin/env bash
# Checks the Debian packages that scripts/build-deb.sh made, as root (CI runs it last):
#   1. packaging/debian/changelog's first entry is the package's version; lintian on both: an
#      error or a warning fails (the overrides the packages ship, and why, are in
#      packaging/lintian-notes.md); info and experimental tags are shown
#   2. dpkg -i of rcontainer, with a policy-rc.d that refuses every start: the files sit where
#      the units expect them, the user rcontainer exists, nothing is enabled or running,
#      /usr/bin/rcontainer --version runs, the man page renders without a warning
#   3. dpkg -r keeps the conffiles, dpkg --purge removes them and /etc/rcontainer
#   4. rcontainer-python installed over rcontainer replaces it, has the python feature and
#      depends on libpython3.11; purged at the end
# Installing purges any rcontainer or rcontainer-python installed before: run it on a machine
# where that is fine (CI's, a container).
#
#   scripts/check-deb.sh [STOCK.deb PYTHON.deb]   default: the two of target/debian
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
stock_deb=${1:-target/debian/rcontainer_${version}-1_amd64.deb}
python_deb=${2:-target/debian/rcontainer-python_${version}-1_amd64.deb}

step() { printf '\n--- check-deb: %s\n' "$*"; }
fail() {
  echo "check-deb: FAILED: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (it installs the packages)"
for deb in "$stock_deb" "$python_deb"; do
  [ -f "$deb" ] || fail "no $deb: run scripts/build-deb.sh first"
done

# A policy-rc.d that refuses every start (deb-systemd-invoke and invoke-rc.d obey it); the one
# there before, if any, is put back on exit.
policy=/usr/sbin/policy-rc.d
saved_policy=
if [ -e "$policy" ]; then
  saved_policy=$(mktemp)
  cp -p "$policy" "$saved_policy"
fi
restore_policy() {
  if [ -n "$saved_policy" ]; then mv "$saved_policy" "$policy"; else rm -f "$policy"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod +x "$policy"

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
known() { dpkg-query -W "$1" >/dev/null 2>&1; }
purge_all() {
  for pkg in rcontainer-python rcontainer; do
    if known "$pkg"; then dpkg --purge "$pkg" >/dev/null; fi
  done
}
expect_file() { [ -f "$1" ] || fail "$1 is not installed"; }
expect_dir() { [ -d "$1" ] || fail "$1 is not installed"; }
expect_gone() { [ ! -e "$1" ] || fail "$1 is still there"; }

step "packaging/debian/changelog names this version"
deb_version=$(dpkg-deb -f "$stock_deb" Version)
changelog_version=$(sed -n '1s/^rcontainer (\([^)]*\)).*/\1/p' packaging/debian/changelog)
[ "$changelog_version" = "$deb_version" ] ||
  fail "packaging/debian/changelog's first entry is $changelog_version, the package is $deb_version: add an entry"

step "lintian (errors and warnings fail)"
lintian --version
for deb in "$stock_deb" "$python_deb"; do
  # Every tag, the overridden ones too (O:); then the verdict (lintian exits 2 when it shows an
  # overridden warning with --fail-on, so the verdict is a run of its own).
  lintian --display-info --display-experimental --pedantic --show-overrides "$deb" 2>&1 |
    grep -v '^running with root privileges' || true
  lintian --fail-on error,warning "$deb" >/dev/null 2>&1 || fail "lintian $deb: an error or a warning"
done

step "dpkg -i $stock_deb"
purge_all
dpkg -i "$stock_deb"
installed rcontainer || fail "rcontainer is not installed"

step "the packaging tests against the installed package (its binary, units and logrotate file)"
RCONTAINER_TEST_BIN=/usr/bin/rcontainer RCONTAINER_TEST_INSTALLED=1 \
  RCONTAINER_TEST_REQUIRE_SYSTEMD=1 cargo test --locked --test integration packaging

step "files where the units expect them"
for f in /usr/bin/rcontainer \
  /lib/systemd/system/rcontainer@.service /lib/systemd/system/rcontainer@.socket \
  /lib/systemd/system/rcontainer-emperor.service \
  /etc/logrotate.d/rcontainer /usr/lib/sysusers.d/rcontainer.conf \
  /usr/share/man/man1/rcontainer.1.gz /usr/share/doc/rcontainer/copyright \
  /usr/share/doc/rcontainer/README.md /usr/share/doc/rcontainer/operations.md \
  /usr/share/doc/rcontainer/examples/app.ini /usr/share/doc/rcontainer/examples/nginx/rcontainer.conf; do
  expect_file "$f"
done
expect_dir /etc/rcontainer/apps
expect_dir /etc/rcontainer/vassals
[ -x /usr/bin/rcontainer ] || fail "/usr/bin/rcontainer is not executable"
# Every path and user the units name: the binary they run, the INI directories they read.
units=(/lib/systemd/system/rcontainer@.service /lib/systemd/system/rcontainer-emperor.service)
grep -h '^ExecStart=' "${units[@]}" | grep -q '/usr/bin/rcontainer' ||
  fail "the units do not run /usr/bin/rcontainer"
grep -q '/etc/rcontainer/apps/' /lib/systemd/system/rcontainer@.service ||
  fail "rcontainer@.service does not read /etc/rcontainer/apps/"
grep -q '/etc/rcontainer/vassals' /lib/systemd/system/rcontainer-emperor.service ||
  fail "rcontainer-emperor.service does not watch /etc/rcontainer/vassals"
for user in $(sed -n 's/^User=//p' "${units[@]}" | sort -u); do
  getent passwd "$user" >/dev/null || fail "the units' User=$user does not exist"
done
conffiles=$(dpkg-query -W -f='${Conffiles}' rcontainer)
for f in /etc/logrotate.d/rcontainer /etc/rcontainer/apps/README /etc/rcontainer/vassals/README; do
  grep -q " $f " <<<"$conffiles" || fail "$f is no conffile"
done

step "the user rcontainer"
getent passwd rcontainer || fail "no user rcontainer after install"
getent group rcontainer || fail "no group rcontainer after install"

step "nothing enabled, nothing started"
enabled=$(find /etc/systemd/system -name 'rcontainer*' 2>/dev/null || true)
[ -z "$enabled" ] || fail "the package enabled units: $enabled"
if pgrep -x rcontainer >/dev/null; then
  # Another engineer's test instances may run on a shared machine: only a process of the
  # package's user would be the package's.
  ! pgrep -x -u rcontainer rcontainer >/dev/null || fail "an rcontainer of user rcontainer runs"
fi

step "/usr/bin/rcontainer --version, the man page"
/usr/bin/rcontainer --version
/usr/bin/rcontainer --version | grep -qx "rcontainer $version" || fail "--version is not $version"
man_warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z \
  /usr/share/man/man1/rcontainer.1.gz 2>&1 >/dev/null)
[ -z "$man_warnings" ] || fail "man --warnings: $man_warnings"
# The installed page is the one the binary prints (the committed file is checked by a test).
cmp -s <(zcat /usr/share/man/man1/rcontainer.1.gz) <(/usr/bin/rcontainer --help-man) ||
  fail "the installed man page is not what /usr/bin/rcontainer --help-man prints"
if command -v logrotate >/dev/null &&
  logrotate --debug /etc/logrotate.d/rcontainer 2>&1 | grep -i error; then
  fail "logrotate finds an error in /etc/logrotate.d/rcontainer"
fi

step "dpkg -r keeps the conffiles, dpkg --purge removes them"
dpkg -r rcontainer
expect_gone /usr/bin/rcontainer
expect_gone /lib/systemd/system/rcontainer@.service
expect_file /etc/logrotate.d/rcontainer
dpkg --purge rcontainer
expect_gone /etc/logrotate.d/rcontainer
expect_gone /etc/rcontainer
expect_gone /var/log/rcontainer
! known rcontainer || fail "rcontainer is still known to dpkg after --purge"

step "rcontainer-python replaces rcontainer"
python_depends=$(dpkg-deb -f "$python_deb" Depends)
grep -q 'libpython3\.11' <<<"$python_depends" || fail "rcontainer-python does not depend on libpython3.11: $python_depends"
dpkg -i "$stock_deb"
dpkg -i "$python_deb"
installed rcontainer-python || fail "rcontainer-python is not installed"
! installed rcontainer || fail "rcontainer is still installed next to rcontainer-python"
/usr/bin/rcontainer --version
/usr/bin/rcontainer --help | grep -q 'this build has the python feature' ||
  fail "the binary of rcontainer-python has no python feature"
expect_file /lib/systemd/system/rcontainer@.service
expect_file /usr/share/doc/rcontainer-python/examples/app.ini
getent passwd rcontainer >/dev/null || fail "no user rcontainer"
dpkg --purge rcontainer-python
purge_all
expect_gone /usr/bin/rcontainer
expect_gone /etc/rcontainer

echo
echo "check-deb: both packages install, hold what the units need, and go away cleanly"
