#!/usr/bin/env bash
# Set up everything streamlstm needs, idempotently:
#   - a virtualenv with the pinned Python dependencies, cached outside the clone under
#     $STREAMLSTM_CACHE (default ~/.cache/streamlstm) and keyed by a hash of what it was
#     built from, linked into the clone as .venv, with this clone installed editable;
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
# The lock is exactly what gets installed, so it (and this script) key the cache.
key=$(cat "$root/tools/requirements.lock" "$root/tools/bootstrap.sh" | sha256sum | cut -c1-12)
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
) 9>"$cache/venv.lock"

ln -sfn "$venv" "$root/.venv"
# Editable install of this clone (no dependency resolution: the lock already has them).
log="$cache/editable-install.log"
if ! "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -e "$root" >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi

# Kafka jars for the local broker (demo and tests); a no-op once cached.
"$venv/bin/python" -c 'from streamlstm.adapters.devkafka import ensure_jars; ensure_jars()'

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
echo "bootstrap: ready (.venv -> $venv)" >&2
