"""Node's ``ws`` package for the tests, installed from npm into a folder of the tests' own.

``python3 -m tests.support.node_ws`` installs it (tests/install-deps.sh does); the fixture
installs it too when it is missing. The folder is ``$WSDAEMON_NODE_DIR`` or
``~/.cache/wsdaemon-node``; the pinned version is in ``tests/support/node_ws/package.json``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent / "node_ws"
CLIENT_JS = HERE / "client.js"


def node_dir() -> Path:
    return Path(os.environ.get("WSDAEMON_NODE_DIR", Path.home() / ".cache" / "wsdaemon-node"))


def ensure_node_ws() -> Path:
    """The node_modules folder holding ``ws`` at the pinned version; installs it when needed."""
    target = node_dir()
    wanted = (HERE / "package.json").read_text()
    installed = target / "package.json"
    modules = target / "node_modules"
    if not (installed.exists() and installed.read_text() == wanted and (modules / "ws").is_dir()):
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm not found: run tests/install-deps.sh (Debian package npm)")
        target.mkdir(parents=True, exist_ok=True)
        installed.write_text(wanted)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--prefix", str(target)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return modules


def node() -> str:
    found = shutil.which("node") or shutil.which("nodejs")
    if found is None:
        raise RuntimeError("node not found: run tests/install-deps.sh (Debian package nodejs)")
    return found


if __name__ == "__main__":
    print(ensure_node_ws())
