#!/usr/bin/env bash
# System packages the platform needs on a Debian machine: Node.js for the frontend build,
# Chromium for the browser tests (pass "chromium"). Installs only what is missing.
set -euo pipefail
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [[ " $* " == *" chromium "* ]] && [[ ! -x /usr/bin/chromium ]]; then missing+=(chromium); fi
if ((${#missing[@]})); then
  echo "system: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
