#!/usr/bin/env bash
# Install the test dependencies (fast when present), then run the test suite.
#   bash tests/run.sh [pytest args...]
# pytest's exit status is this script's exit status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/install-deps.sh
export AUTOBAHN_VENV="${AUTOBAHN_VENV:-$HOME/.cache/wsdaemon-autobahn}"

rc=0
python3 -m pytest -q tests "$@" || rc=$?
exit "$rc"
