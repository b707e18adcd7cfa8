#!/usr/bin/env bash
# Builds the drift container image (deploy/Containerfile) from the release
# binaries of a build directory and Debian 12 packages only:
#
#   1. the Debian packages that hold the shared libraries the binaries link
#      (ldd, then dpkg -S; backports packages at the exact version this
#      machine has) become a minimal root (mmdebstrap, variant essential,
#      from this machine's own apt sources) with the user drift (10001);
#   2. the binaries are staged beside it, and buildah builds the image
#      (FROM scratch + ADD + COPY: no container runtime needed).
#
# usage: deploy/build-image.sh [--build DIR] [--out DIR] [--tag NAME]
#                              [--rootfs-only]
#   --build DIR    release build directory (default build)
#   --out DIR      work directory: rootfs.tar, bin/ (default DIR/image)
#   --tag NAME     image name (default localhost/drift:latest)
#   --rootfs-only  stop after step 1 and the staging (no buildah)
# Needs root (mmdebstrap as root makes a root owned by root).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=build
out=
tag=localhost/drift:latest
rootfs_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --rootfs-only) rootfs_only=1; shift ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${out:-$build/image}
die() { echo "build-image: $*" >&2; exit 1; }

bins=()
for b in node/drift-node router/drift-router cli/drift-cli; do
  [ -x "$build/$b" ] && bins+=("$build/$b")
done
[ -x "$build/node/drift-node" ] || die "$build/node/drift-node is not built (make build)"
for t in mmdebstrap dpkg-query ldd; do
  command -v "$t" >/dev/null || die "$t is missing (make deps)"
done

# 1. The packages of the libraries the binaries link.
libs=$(ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
[ -n "$libs" ] || die "ldd found no shared library"
pkgs=()
for lib in $libs; do
  # dpkg's database may name the file under /lib or /usr/lib (merged /usr).
  p=""
  for cand in "$lib" "$(readlink -f "$lib")" "${lib#/usr}" "/usr$lib"; do
    p=$(dpkg -S "$cand" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$p" ] && break
  done
  [ -n "$p" ] || die "no Debian package holds $lib"
  pkgs+=("$p")
done
include=()
for p in $(printf '%s\n' "${pkgs[@]}" | sort -u); do
  v=$(dpkg-query -W -f='${Version}' "$p")
  # A backports package by its version, or apt would pick bookworm's own.
  case "$v" in
    *bpo*) include+=("$p=$v") ;;
    *) include+=("$p") ;;
  esac
done
echo "build-image: libraries from ${include[*]}"

sources=()
for s in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
         /etc/apt/sources.list.d/*.list; do
  [ -f "$s" ] && sources+=("$s")
done
[ ${#sources[@]} -gt 0 ] || die "no apt sources on this machine"

mkdir -p "$out"
rm -rf "$out/bin" "$out/rootfs.tar"
# The user drift and its data directory; apt's lists and caches dropped.
# Documentation and translations are left out (copyright files kept).
mmdebstrap --variant=essential --quiet \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --include="$(IFS=,; echo "${include[*]}")" \
  --customize-hook='echo "drift:x:10001:10001:drift:/data:/usr/sbin/nologin" >> "$1/etc/passwd"' \
  --customize-hook='echo "drift:x:10001:" >> "$1/etc/group"' \
  --customize-hook='echo "drift:!:19000:0:99999:7:::" >> "$1/etc/shadow"' \
  --customize-hook='mkdir -p "$1/data" && chown 10001:10001 "$1/data"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$out/rootfs.tar" "${sources[@]}"

mkdir -p "$out/bin"
for b in "${bins[@]}"; do
  install -m 0755 "$b" "$out/bin/"
done
cp "$here/Containerfile" "$out/Containerfile"
echo "build-image: root in $out/rootfs.tar, binaries in $out/bin: ${bins[*]##*/}"
[ "$rootfs_only" = 1 ] && exit 0

command -v buildah >/dev/null || die "buildah is missing (make deps)"
buildah build --quiet --file "$out/Containerfile" --tag "$tag" "$out"
echo "build-image: built $tag"
