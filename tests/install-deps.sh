#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are missing.
# One `apt-get update` first, and only when something is missing. Needs root
# (or sudo) only when there is something to install.
#
#   tests/install-deps.sh PKG...
#   tests/install-deps.sh --backports PKG[>=VERSION]...
#
# With --backports the packages come from bookworm-backports (needed when
# bookworm's own version is too old: libraft-dev, see cluster/member.h). The
# suite is added to apt's sources first when it is missing, on the same
# Debian archive the machine already uses (the URI of its bookworm suite)
# and signed by the same keyring; a package older than VERSION counts as
# missing and is upgraded.
set -euo pipefail

suite=""
if [ "${1:-}" = "--backports" ]; then
  suite=bookworm-backports
  shift
fi

missing=()
for spec in "$@"; do
  pkg=${spec%%>=*}
  min=""
  [ "$pkg" != "$spec" ] && min=${spec#*>=}
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" = "install ok installed" ]; then
    [ -z "$min" ] && continue
    ver=$(dpkg-query -W -f='${Version}' "$pkg")
    dpkg --compare-versions "$ver" ge "$min" && continue
  fi
  missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}${suite:+ from $suite}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || {
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive

if [ -n "$suite" ] && ! grep -rqs -E "^[^#]*\b$suite\b" \
    /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # The archive the machine already uses for bookworm.
  uri=$( (cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
            2>/dev/null || true) |
        grep -E '^(URIs:|deb )' | grep -v security | head -n1 |
        sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//; s/ .*//' || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || $sudo apt-get install -y -qq debian-archive-keyring
  echo "install-deps: adding $suite ($uri) to apt's sources"
  printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
    "$uri" "$suite" "$keyring" |
    $sudo tee "/etc/apt/sources.list.d/$suite.sources" >/dev/null
fi

$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends ${suite:+-t "$suite"} \
  "${missing[@]}" >/dev/null
