#!/usr/bin/env bash
# Set up everything streamlstm needs, idempotently:
#   - a virtualenv with the pinned Python dependencies, cached outside the clone under
#     $STREAMLSTM_CACHE (default ~/.cache/streamlstm) and keyed by a hash of what it was
#     built from, seen from a small per-clone .venv that also puts this clone's source on
#     the path (and provides the `streamlstm` command);
#   - the Apache Kafka broker jars (Maven Central, cached the same way);
#   - with --ops: Debian's prometheus and alertmanager (for the metrics/rules tests).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${STREAMLSTM_CACHE:-$HOME/.cache/streamlstm}
python=${PYTHON:-python3}
mkdir -p "$cache"

with_ops=0
for arg in "$@"; do
  case $arg in
    --ops) with_ops=1 ;;
    *) echo "usage: $0 [--ops]" >&2; exit 2 ;;
  esac
done

pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The lock is exactly what gets installed, so it keys the cache (with the recipe's version:
# bump venv_recipe when the way the venv is built below changes).
venv_recipe=2
key=$( (cat "$root/tools/requirements.lock"; echo "recipe=$venv_recipe") | sha256sum | cut -c1-12)
venv="$cache/venv-py$pyver-$key"

(
  flock 9
  if [ ! -f "$venv/.complete" ]; then
    echo "bootstrap: creating virtualenv $venv (first run only; ~1-2 min)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip setuptools wheel
    # The lock pins every package; the project's own metadata adds nothing unpinned.
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tools/requirements.lock"
    touch "$venv/.complete"
  fi
  touch "$venv/.last-used"
  # Venvs of older locks that no clone has used for a week go (each is several GB).
  for old in "$cache"/venv-py*; do
    if [ "$old" != "$venv" ] && [ -z "$(find "$old/.last-used" -mtime -7 2>/dev/null)" ]; then
      rm -rf "$old"
    fi
  done
) 9>"$cache/venv.lock"

# This clone's own .venv: a small venv that sees the shared packages and this clone's
# source. Not an editable install into the shared venv: that would point every clone
# sharing the cache at whichever clone ran setup last.
overlay="$root/.venv"
[ -L "$overlay" ] && rm "$overlay"  # the older layout linked the shared venv here
[ -x "$overlay/bin/python" ] || "$python" -m venv --without-pip "$overlay"
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
site_dir=$("$overlay/bin/python" -c "$purelib")
shared_site=$("$venv/bin/python" -c "$purelib")
# addsitedir (not a bare path) so the shared site's own .pth files are processed too.
echo "import site; site.addsitedir('$shared_site')" >"$site_dir/_streamlstm_shared.pth"
echo "$root" >"$site_dir/_streamlstm_source.pth"
for module in streamlstm pytest; do  # commands that run as modules of this venv's python
  printf '#!/bin/sh\nexec "$(dirname "$0")/python" -m %s "$@"\n' "$module" >"$overlay/bin/$module"
  chmod +x "$overlay/bin/$module"
done
ln -sfn "$venv/bin/ruff" "$overlay/bin/ruff"

# Kafka jars for the local broker (demo and tests); a no-op once cached.
"$overlay/bin/python" -c 'from streamlstm.adapters.devkafka.jars import ensure_jars; ensure_jars()'

if [ "$with_ops" = 1 ]; then
  need=()
  command -v promtool >/dev/null || need+=(prometheus)
  command -v amtool >/dev/null || need+=(prometheus-alertmanager)
  if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${need[*]}" >&2
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
      "${need[@]}" >/dev/null
  fi
fi
echo "bootstrap: ready (.venv over the shared packages in $venv)" >&2
