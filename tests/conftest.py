import pytest

from tests.support.daemon_process import Daemon


@pytest.fixture
def daemon_factory():
    """Start daemons with ``daemon_factory(*cli_args, app=...)``; all are stopped after the test."""
    started = []

    def start(*args, **kwargs):
        d = Daemon(*args, **kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def echo_daemon(daemon_factory):
    return daemon_factory(app="wsdaemon.apps.echo:app")
