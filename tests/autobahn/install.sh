#!/usr/bin/env bash
# Install Autobahn|Testsuite's wstest, ported to Python 3, into a virtualenv.
#
#   tests/autobahn/install.sh VENV
#
# PYTHON picks the interpreter (default python3); it must be CPython 3.11 or 3.12,
# because the port runs the stdlib's lib2to3. Steps: create VENV if needed,
# install requirements.txt (exact pins), check that nothing unpinned came in,
# install autobahntestsuite and autobahn pristine with --no-deps (at the versions
# py3port.py names), port them with py3port.py, and run `wstest --autobahnversion`.
# A venv that already holds the current port is left as it is (a few seconds).
# Any failure stops with a message and a non-zero exit status.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:?usage: install.sh VENV}"
PY="${PYTHON:-python3}"

die() { echo "autobahn/install.sh: ERROR: $*" >&2; exit 1; }
note() { echo "autobahn/install.sh: $*"; }

# Run a command quietly; on failure show its output and stop.
run() {
  local log
  log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location '.*' is ignored" "$log" | tail -40 >&2
    rm -f "$log"
    die "command failed: $*"
  fi
  rm -f "$log"
}

command -v "$PY" >/dev/null 2>&1 || die "no interpreter '$PY' (set PYTHON)"
pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$pyver" in
  3.11|3.12) ;;
  *) die "$PY is Python $pyver; the port needs 3.11 or 3.12 (lib2to3 is gone from 3.13)" ;;
esac

if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
  note "creating $VENV with $PY ($pyver)"
  mkdir -p "$(dirname "$VENV")"
  run "$PY" -m venv --clear "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check --no-input)
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

state=missing
if [ -d "$SITE/autobahntestsuite" ]; then
  state="$("$VPY" "$HERE/py3port.py" --status "$SITE")"
fi
if [ "$state" = ported ] && [ -x "$VENV/bin/wstest" ]; then
  note "$VENV already holds the current port"
else
  note "installing the pinned requirements into $VENV"
  run "${PIP[@]}" install -r "$HERE/requirements.txt"
  # every installed distribution must be pinned in requirements.txt
  "$VPY" -I - "$HERE/requirements.txt" <<'EOF' || die "requirements.txt is incomplete"
import importlib.metadata as md, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pinned = {norm(re.split(r"[\[=<>~ ]", l.strip())[0]) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
extra = sorted({norm(d.metadata["Name"]) for d in md.distributions()} - pinned - {"pip", "autobahn", "autobahntestsuite"})
if extra:
    sys.exit("installed but not pinned: " + ", ".join(extra))
EOF

  note "installing pristine autobahntestsuite and autobahn"
  read -r -a pins <<<"$("$VPY" "$HERE/py3port.py" --pins)"
  "${PIP[@]}" uninstall -y autobahntestsuite autobahn >/dev/null 2>&1 || true
  rm -rf "$SITE/autobahntestsuite" "$SITE/autobahn"
  run "${PIP[@]}" install --no-deps --no-build-isolation "${pins[@]}"

  note "porting to Python 3"
  "$VPY" "$HERE/py3port.py" "$SITE" || die "py3port.py failed (see above)"
fi

"$VENV/bin/wstest" --autobahnversion >/dev/null 2>&1 || die "$VENV/bin/wstest does not run"
note "ready: $VENV/bin/wstest ($("$VENV/bin/wstest" --autobahnversion 2>&1 | tail -n 1))"
