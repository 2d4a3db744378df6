#!/usr/bin/env bash
# Install what bench/run.py needs, on a Debian machine (as root for apt). Idempotent.
#
#   bash bench/setup.sh
#
# - Debian: gcc, zlib1g-dev (loadgen --deflate links -lz), util-linux (taskset), nodejs, npm,
#   redis-server (wsdaemon+broker, wsdaemon-p2 and bench/cluster.py start their own, never the service)
# - pip: the Python peers (websockets, aiohttp, tornado, uvloop, picows, python-socketio with redis)
# - npm: Node's ws, bufferutil, utf-8-validate (versions pinned in bench/peers/node/package.json
#   and package-lock.json) into bench/peers/node/node_modules; run.py also does this step itself
#   the first time it starts the node-ws peer. socket.io, @socket.io/redis-adapter and redis
#   (bench/peers/node-socketio) for bench/cluster.py, which also installs them on first use.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

missing=()
command -v gcc >/dev/null || missing+=(gcc)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
command -v taskset >/dev/null || missing+=(util-linux)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench/setup.sh: apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -q
  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
fi

"${PYTHON:-python3}" -m pip install -q websockets aiohttp tornado uvloop picows python-socketio redis

cd "$BENCH/peers/node"
npm ci --no-audit --no-fund
node -e "for (const m of ['ws', 'bufferutil', 'utf-8-validate']) require('./node_modules/' + m)"
cd "$BENCH/peers/node-socketio"
npm ci --no-audit --no-fund
node -e "for (const m of ['socket.io', '@socket.io/redis-adapter', 'redis']) require('./node_modules/' + m)"
echo "bench/setup.sh: done"
