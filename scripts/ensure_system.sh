#!/usr/bin/env bash
# Debian packages the platform needs, installed only when missing. Arguments name what to check:
#   venv      $PYTHON can create virtualenvs (Debian ships ensurepip in python3.X-venv)
#   node      Node.js and npm for the frontend build
#   chromium  Debian's Chromium for the browser tests (/usr/bin/chromium)
#   redis     the redis-server binary (benchmarks and tests start private servers)
set -euo pipefail
python="${PYTHON:-python3}"
missing=()
for what in "$@"; do
  case "$what" in
    venv)
      if ! "$python" -c 'import ensurepip' 2>/dev/null; then
        missing+=("python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv")
      fi
      ;;
    node)
      command -v node >/dev/null || missing+=(nodejs)
      command -v npm >/dev/null || missing+=(npm)
      ;;
    chromium)
      [[ -x /usr/bin/chromium ]] || missing+=(chromium)
      ;;
    redis)
      command -v redis-server >/dev/null || missing+=(redis-server)
      ;;
    *)
      echo "ensure_system: unknown requirement '$what' (venv, node, chromium, redis)" >&2
      exit 2
      ;;
  esac
done
if ((${#missing[@]})); then
  echo "system: installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
