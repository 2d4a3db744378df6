#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzing client against a WebSocket echo server on loopback.
#
#   tests/autobahn/run.sh [--with-compression] [--agent NAME] [--timeout SECONDS] \
#       HOST PORT OUTDIR [CASES]
#
# HOST PORT  the server under test, reached as ws://HOST:PORT/; it must echo every
#            text and binary message. HOST must be a loopback address (127.0.0.0/8,
#            ::1) or localhost: anything else is refused.
# OUTDIR     receives spec.json, wstest.log and wstest's reports: index.json,
#            index.html and a .json and .html file per case.
# CASES      comma-separated case patterns, default "*" (for example "1.*,6.4.1").
#
# --with-compression  include the permessage-deflate cases 12.* and 13.* (216 cases,
#                     minutes); without it they are excluded.
# --agent NAME        the server's name in the reports (default: wsdaemon).
# --timeout SECONDS   stop wstest after this long (default: $AUTOBAHN_TIMEOUT, else
#                     600, or 2400 with --with-compression).
#
# AUTOBAHN_VENV is the venv with the ported wstest (default ~/.cache/wsdaemon-autobahn);
# install.sh sets it up first when it does not hold the current port.
#
# The last line printed is the summary from summarize.py:
#   autobahn: OK=N NON-STRICT=N INFORMATIONAL=N UNIMPLEMENTED=N FAILED=N
# Exit status: 0 the run completed, whatever the verdicts; 2 usage or refused host;
# 3 nothing accepts connections on HOST:PORT; 4 wstest failed, timed out or logged a
# Python traceback; 5 no usable report.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${AUTOBAHN_VENV:-$HOME/.cache/wsdaemon-autobahn}"

usage() { awk 'NR > 2 && !/^#/ { exit } NR > 2 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 2; }
say() { echo "autobahn/run.sh: $*"; }
fail() { local code="$1"; shift; echo "autobahn/run.sh: ERROR: $*" >&2; exit "$code"; }

compression=0
agent=wsdaemon
timeout_s="${AUTOBAHN_TIMEOUT:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --with-compression) compression=1; shift ;;
    --agent) [ $# -ge 2 ] || usage; agent="$2"; shift 2 ;;
    --timeout) [ $# -ge 2 ] || usage; timeout_s="$2"; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "autobahn/run.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -eq 3 ] || [ $# -eq 4 ] || usage
host="$1" port="$2" outdir="$3" cases="${4:-*}"
if [ -z "$timeout_s" ]; then
  if [ "$compression" = 1 ]; then timeout_s=2400; else timeout_s=600; fi
fi

if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  fail 2 "bad port '$port'"
fi
if ! [[ "$timeout_s" =~ ^[0-9]{1,6}$ ]] || [ "$timeout_s" -lt 1 ]; then
  fail 2 "bad timeout '$timeout_s'"
fi
# Only loopback is ever a target. Decide on the literal address, before any traffic.
url_host="$(python3 - "$host" <<'EOF'
import ipaddress, sys
h = sys.argv[1]
if h == "localhost":
    print(h)
    sys.exit()
try:
    ip = ipaddress.ip_address(h[1:-1] if h.startswith("[") and h.endswith("]") else h)
except ValueError:
    sys.exit(1)
if not ip.is_loopback:
    sys.exit(1)
print(f"[{ip}]" if ip.version == 6 else ip)
EOF
)" || fail 2 "refusing host '$host': only loopback addresses (127.0.0.0/8, ::1, localhost)"
if [ "$compression" = 0 ] && [[ ",$cases" =~ ,[[:space:]]*1[23]\. ]]; then
  fail 2 "cases 12.* and 13.* are only run with --with-compression"
fi

mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
rm -f "$outdir/index.json"
url="ws://$url_host:$port/"

python3 - "$outdir" "$agent" "$url" "$cases" "$compression" >"$outdir/spec.json" <<'EOF'
import json, sys
outdir, agent, url, cases, compression = sys.argv[1:]
spec = {
    "outdir": outdir,
    "servers": [{"agent": agent, "url": url}],
    "cases": [c.strip() for c in cases.split(",") if c.strip()],
    "exclude-cases": [] if compression == "1" else ["12.*", "13.*"],
    "exclude-agent-cases": {},
}
json.dump(spec, sys.stdout, indent=2)
EOF

python3 - "${url_host//[\[\]]/}" "$port" 2>/dev/null <<'EOF' || fail 3 "nothing accepts connections on $host:$port"
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
EOF

if [ ! -x "$VENV/bin/wstest" ] || [ "$("$VENV/bin/python" "$HERE/py3port.py" --status \
    "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')")" != ported ]; then
  say "no current port in $VENV: running install.sh"
  "$HERE/install.sh" "$VENV" >&2
fi

what="cases $cases"
[ "$compression" = 1 ] || what="$what, without 12.* and 13.*"
say "wstest fuzzingclient -> $url ($what), at most $timeout_s s, log $outdir/wstest.log"
start=$SECONDS
rc=0
(cd "$outdir" && exec timeout --kill-after=10 "$timeout_s" "$VENV/bin/wstest" -m fuzzingclient -s "$outdir/spec.json") \
  >"$outdir/wstest.log" 2>&1 || rc=$?
say "wstest exited $rc after $((SECONDS - start)) s, $(grep -c '^Running test case' "$outdir/wstest.log" || true) cases run"

problem=""
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  problem="wstest did not finish within $timeout_s s"
elif [ "$rc" != 0 ]; then
  problem="wstest exited with status $rc"
elif grep -q 'Traceback (most recent call last)' "$outdir/wstest.log"; then
  problem="wstest logged a Python traceback"
fi
if [ -n "$problem" ]; then
  grep -v '^Running test case' "$outdir/wstest.log" | tail -n 30 >&2 || true
fi

src=0
"$VENV/bin/python" "$HERE/summarize.py" "$outdir" || src=$?
[ -z "$problem" ] || fail 4 "$problem (log: $outdir/wstest.log)"
[ "$src" = 0 ] || fail 5 "no usable report in $outdir"
