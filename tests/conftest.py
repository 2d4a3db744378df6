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


@pytest.fixture
def redis_server(tmp_path_factory):
    """A private redis-server on a free loopback port (Debian's package), stopped after the test."""
    from tests.support.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
