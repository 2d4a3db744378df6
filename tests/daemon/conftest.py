import pytest

from tests.support.wsctl import Service


@pytest.fixture
def service_factory(tmp_path):
    """``service_factory(*cli_args, **kwargs)`` makes a Service in tmp_path; every one is killed after."""
    services = []

    def make(*args, **kwargs):
        s = Service(tmp_path, *args, **kwargs)
        services.append(s)
        return s

    yield make
    for s in services:
        s.kill_all()
