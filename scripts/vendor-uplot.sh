#!/usr/bin/env bash
# Checks the vendored uPlot files (crates/rpc/dashboard/vendor) against the npm registry's package, or with
# --update copies them from it. The tarball's sha256 is pinned here.
set -euo pipefail
VERSION=1.6.32
SHA256=4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/crates/rpc/dashboard/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "uplot@$VERSION" --silent >/dev/null)
echo "$SHA256  $tmp/uplot-$VERSION.tgz" | sha256sum -c --quiet
tar xzf "$tmp/uplot-$VERSION.tgz" -C "$tmp"
for f in uPlot.iife.min.js uPlot.min.css; do
  if [ "${1:-}" = --update ]; then
    cp "$tmp/package/dist/$f" "$DEST/$f"
  else
    cmp "$tmp/package/dist/$f" "$DEST/$f" || { echo "vendored $f differs from uplot@$VERSION" >&2; exit 1; }
  fi
done
echo "uPlot $VERSION: vendored files match the npm package"
