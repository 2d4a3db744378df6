"""The init.d script with DAEMON_USER and a wsdaemon (virtualenv) the user cannot read: a message naming the path."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import sys
from pathlib import Path

import pytest

from tests.daemon.test_initd import InitScript
from tests.support.daemon_process import REPO

USER = "nobody"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None, reason="switching users needs root and runuser"
)


def first_closed_directory(path: Path) -> Path | None:
    """The first ancestor of ``path`` that others cannot enter (like /root, 0700)."""
    uid = pwd.getpwnam(USER).pw_uid
    for parent in reversed(path.parents):
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
            return parent
    return None


def test_a_daemon_under_a_private_directory_names_the_unreadable_path(tmp_path):
    private = tmp_path / "root-home"
    private.mkdir(mode=0o700)  # like /root
    venv = private / "venv" / "bin"
    venv.mkdir(parents=True)
    init = InitScript(venv, sys.executable, str(REPO), user=USER)
    blocked = first_closed_directory(venv / "wsdaemon")
    assert blocked is not None
    try:
        result = init("start")
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert (
            f"DAEMON_USER {USER} cannot read {venv / 'wsdaemon'}: {blocked} is not accessible to it (mode 7"
            in result.stderr
        )
        assert "Permission denied" not in result.stderr + result.stdout
        assert not init.pidfile.exists()
    finally:
        init.kill()
