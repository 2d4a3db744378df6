"""The init.d script with DAEMON_USER and a wsdaemon (virtualenv) the user cannot read: a message naming the path."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import sys
import tempfile
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


def test_a_readable_script_whose_python_is_in_a_private_directory_names_the_python(tmp_path):
    private = tmp_path / "root-home" / "venv" / "bin"
    private.mkdir(parents=True)
    python = private / "python"
    python.symlink_to(sys.executable)
    base = Path(tempfile.mkdtemp(prefix="wsdaemon-initd-"))  # readable by everyone, unlike tmp_path
    try:
        base.chmod(0o755)
        init = InitScript(base, sys.executable, str(REPO), user=USER)
        script = base / "wsdaemon"
        script.write_text(f"#!{python}\nimport sys\nfrom wsdaemon.daemon.cli import main\nsys.exit(main())\n")
        script.chmod(0o755)
        blocked = first_closed_directory(python)
        result = init("start")
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert f"DAEMON_USER {USER} cannot read {python}: {blocked} is not accessible to it" in result.stderr
        assert not init.pidfile.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_unknown_daemon_user_is_named(tmp_path):
    init = InitScript(tmp_path, sys.executable, str(REPO), user="no-such-user-xyz")
    result = init("start")
    assert result.returncode == 1
    assert "DAEMON_USER no-such-user-xyz does not exist" in result.stderr
