"""Start-up mistakes are one clear error at start (exit 1) naming the option: TLS files, application imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trustme

from tests.support.wsctl import Service, clean_env


@pytest.fixture(scope="module")
def pems(tmp_path_factory):
    d = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    other = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    other.private_key_pem.write_to_path(str(d / "other-key.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "both.pem"))
    return d


def run_fails(svc: Service, *args: str, env: dict | None = None) -> str:
    """``wsdaemon run`` must exit 1 at once; its stderr."""
    cmd = [sys.executable, "-m", "wsdaemon", "run", *svc.options, *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=clean_env(env), cwd=str(svc.tmp), timeout=30
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    return proc.stderr


def both_fail(svc: Service, *args: str, env: dict | None = None) -> list[str]:
    """The same mistake stops ``run`` and ``start``; both stderrs."""
    started = svc.cli("start", *args, env=env)
    assert started.returncode == 1, (started.stdout, started.stderr)
    assert not svc.pidfile.exists()
    return [run_fails(svc, *args, env=env), started.stderr]


def test_a_certificate_without_its_key_names_keyfile(service_factory, pems):
    for err in both_fail(service_factory(), "--certfile", str(pems / "cert.pem")):
        assert "PEM lib" not in err
        assert f"--certfile {pems / 'cert.pem'} holds no private key: give its key with --keyfile" in err


def test_a_key_of_another_certificate_is_named(service_factory, pems):
    args = ("--certfile", str(pems / "cert.pem"), "--keyfile", str(pems / "other-key.pem"))
    for err in both_fail(service_factory(), *args):
        assert f"--keyfile {pems / 'other-key.pem'} does not belong to the certificate" in err


def test_a_missing_certificate_file_is_named(service_factory, tmp_path):
    for err in both_fail(service_factory(), "--certfile", str(tmp_path / "nope.pem")):
        assert f"--certfile {tmp_path / 'nope.pem'}: no such file" in err


def test_keyfile_or_tls_port_without_certfile_is_an_error_not_plain_text(service_factory, pems):
    for err in both_fail(service_factory(), "--keyfile", str(pems / "key.pem")):
        assert "--keyfile" in err and "without --certfile" in err
    for err in both_fail(service_factory(), "--tls-port", "8443"):
        assert "--tls-port 8443 is set without --certfile" in err


def test_a_good_certificate_still_starts(service_factory, pems):
    svc = service_factory("--certfile", str(pems / "both.pem"))
    svc.start()
    assert svc.cli("stop").returncode == 0


def test_an_application_import_error_shows_its_type_and_traceback(service_factory, tmp_path):
    (tmp_path / "wsdaemon_db_app.py").write_text(
        "from wsdaemon import Application\n"
        "def connect():\n"
        "    raise ConnectionRefusedError('db not reachable')\n"
        "connect()\n"
        "app = Application()\n"
    )
    svc = service_factory(app="wsdaemon_db_app:app")
    env = {"PYTHONPATH": f"{tmp_path}:{clean_env()['PYTHONPATH']}"}
    for err in both_fail(svc, env=env):
        assert (
            "cannot load application 'wsdaemon_db_app:app': ConnectionRefusedError: db not reachable" in err
        )
        assert "Traceback (most recent call last)" in err
        assert 'wsdaemon_db_app.py", line 4' in err and "in connect" in err
        assert "importlib" not in err and "load_app" not in err  # the application's frames only


def test_a_bad_broker_url_is_named_before_anything_starts(service_factory, tmp_path):
    for err in both_fail(service_factory(), "--broker", "http://127.0.0.1:6379"):
        assert "--broker: 'http://127.0.0.1:6379': the scheme must be redis://, rediss:// or unix://" in err
    for err in both_fail(service_factory(), "--broker", "redis://127.0.0.1:6379/zero"):
        assert "--broker: the database must be a number, not 'zero'" in err
    missing = tmp_path / "no-ca.pem"
    for err in both_fail(service_factory(), "--broker", f"rediss://127.0.0.1?ssl_ca_certs={missing}"):
        assert f"--broker: ssl_ca_certs {missing}: no such file or not readable" in err
