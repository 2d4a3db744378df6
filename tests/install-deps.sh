#!/usr/bin/env bash
# Install everything the wsdaemon test suite needs, on a Debian (bookworm)
# machine, as root. Idempotent; fast when everything is already there.
#
#   bash tests/install-deps.sh
#
# Installs:
#   - Debian packages: chromium, fonts-liberation (real-browser tests, driven by
#     playwright with executable_path=/usr/bin/chromium), node-faye-websocket
#     (reference hixie-75/76 server, NODE_PATH=/usr/share/nodejs) and nodejs
#     (the package does not depend on it; tests/test_hixie_faye.py runs it), npm when
#     nodejs did not bring it, shellcheck; gcc and zlib1g-dev (tests/bench builds
#     bench/loadgen.c, which links zlib);
#     systemd (for systemd-analyze only; never booted) if systemd-analyze is missing;
#     redis-server and nginx (started by fixtures on free ports, never the system services)
#   - the package itself, editable, with its [test] extra, plus ruff
#   - the Autobahn|Testsuite venv (wstest, ported to Python 3) into $AUTOBAHN_VENV
#     (default: ~/.cache/wsdaemon-autobahn), with tests/autobahn/install.sh
#
# Never runs `playwright install`: its browser download cannot work here.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AUTOBAHN_VENV="${AUTOBAHN_VENV:-$HOME/.cache/wsdaemon-autobahn}"
PY="${PYTHON:-python3}"
STAMP_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/wsdaemon"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_ROOT_USER_ACTION=ignore

say() { echo "install-deps: $*"; }
warn() { echo "install-deps: WARNING: $*" >&2; }

# Run a command with its output kept in a log; show the log only if it fails.
quiet() {
  local log rc=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$log" >&2
    echo "install-deps: FAILED ($rc): $*" >&2
  fi
  rm -f "$log"
  return "$rc"
}

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

has_candidate() {
  local cand
  cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
  [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

# ---------------------------------------------------------------- Debian ----
apt_deps() {
  local wanted=(chromium fonts-liberation nodejs node-faye-websocket shellcheck logrotate gcc zlib1g-dev redis-server nginx)
  local missing=() p
  for p in "${wanted[@]}"; do
    is_installed "$p" || missing+=("$p")
  done
  # systemd only for systemd-analyze; skip when the command is already there
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  # npm (Node's ws for the compression tests) only when no nodejs package brought it
  command -v npm >/dev/null 2>&1 || missing+=(npm)

  if [ "${#missing[@]}" -eq 0 ]; then
    say "apt: all packages present"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    warn "not root, cannot apt-get install: ${missing[*]}"
    return 1
  fi

  say "apt: installing ${missing[*]}"
  quiet apt-get -o DPkg::Lock::Timeout=300 update
  local todo=()
  for p in "${missing[@]}"; do
    if has_candidate "$p"; then
      todo+=("$p")
    else
      warn "apt: package $p does not exist here, skipped"
    fi
  done
  [ "${#todo[@]}" -eq 0 ] && return 0

  local core=() p2
  for p2 in "${todo[@]}"; do [ "$p2" = systemd ] || core+=("$p2"); done
  if [ "${#core[@]}" -gt 0 ]; then
    quiet apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${core[@]}"
  fi
  # systemd is optional: a container must not fail the run over it
  if [[ " ${todo[*]} " == *" systemd "* ]]; then
    quiet apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends systemd \
      || warn "apt: systemd could not be installed; tests needing systemd-analyze will skip"
  fi
}

# ---------------------------------------------------------------- Python ----
py_deps() {
  # The stamp records what was installed: repo path (editable install points at
  # it), the packaging metadata and the interpreter. Re-install when any of it
  # changed, or when a quick import check fails.
  local key stamp
  key="$(
    {
      echo "$REPO"
      "$PY" -c 'import sys; print(sys.executable, sys.version)'
      cat "$REPO/setup.cfg" "$REPO/pyproject.toml" 2>/dev/null
    } | sha256sum | cut -d' ' -f1
  )"
  stamp="$STAMP_DIR/pydeps.$key"
  if [ -f "$stamp" ] && (cd / && "$PY" - "$REPO" <<'EOF') >/dev/null 2>&1; then
import os, sys
import pytest, pytest_timeout, hypothesis, websockets, websocket, aiohttp, requests
import playwright.sync_api, trustme, daemon, click, importlinter, grimp, socketio, redis
import wsdaemon
assert os.path.realpath(os.path.dirname(wsdaemon.__file__)).startswith(os.path.realpath(sys.argv[1]) + os.sep)
EOF
    "$PY" -m ruff --version >/dev/null 2>&1 && { say "pip: all packages present"; return 0; }
  fi

  say "pip: installing -e .[test] ruff"
  (cd "$REPO" && quiet "$PY" -m pip install -q -e '.[test]' ruff)
  mkdir -p "$STAMP_DIR"
  rm -f "$STAMP_DIR"/pydeps.*
  touch "$stamp"
}

# -------------------------------------------------------------- Autobahn ----
autobahn_deps() {
  # install.sh leaves a venv that already holds the current port alone (a few
  # seconds) and re-ports one made by an older port. Without wstest the
  # conformance test cannot run: that is fatal.
  say "autobahn: wstest in $AUTOBAHN_VENV"
  if ! quiet bash "$REPO/tests/autobahn/install.sh" "$AUTOBAHN_VENV"; then
    echo "install-deps: ERROR: could not install Autobahn|Testsuite into $AUTOBAHN_VENV" \
      "(tests/autobahn/install.sh failed, output above)" >&2
    exit 1
  fi
}

# ------------------------------------------------------- C accelerator ----
# The editable install does not leave the optional extension in the source tree;
# build it in place so the tests and the daemon run with it (a test checks).
speedups() {
  local so
  so="$(find "$REPO/wsdaemon/proto" -maxdepth 1 -name "_speedups*.so" | head -n 1)"
  # up to date: newer than every C source and header of the extension
  if [ -n "$so" ] && [ -z "$(find "$REPO/wsdaemon/proto" -maxdepth 1 \( -name "_*.c" -o -name "_*.h" \) -newer "$so")" ]; then
    say "speedups: $(basename "$so") up to date"
    return 0
  fi
  say "speedups: building the C accelerator in place"
  (cd "$REPO" && quiet "$PY" setup.py -q build_ext --inplace)
}

# ------------------------------------------------------------ Node ws ----
# Node's ws client (permessage-deflate tests), pinned in tests/support/node_ws/package.json,
# installed from npm into ${WSDAEMON_NODE_DIR:-~/.cache/wsdaemon-node}.
node_deps() {
  say "node: ws into ${WSDAEMON_NODE_DIR:-$HOME/.cache/wsdaemon-node}"
  (cd "$REPO" && quiet "$PY" -m tests.support.node_ws) || warn "node: could not install ws from npm"
}

start=$SECONDS
apt_deps
py_deps
speedups
autobahn_deps
node_deps
say "done in $((SECONDS - start)) s"
