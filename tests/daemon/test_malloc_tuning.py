"""glibc malloc tuning: large message buffers stay in the heap (see wsdaemon/malloc_tuning.py)."""

import subprocess
import sys


def test_mallopt_applies_on_glibc():
    code = (
        "from wsdaemon.daemon.malloc_tuning import keep_large_buffers_in_heap as k; "
        "import sys; sys.exit(0 if k(16 * 1024 * 1024) else 1)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_daemon_logs_the_thresholds(echo_daemon):
    echo_daemon.wait_for_log("mmap threshold 33554432")


def test_tuning_can_be_turned_off(daemon_factory):
    d = daemon_factory("--no-malloc-tuning", app="wsdaemon.apps.echo:app")
    assert "mmap threshold" not in d.wait_for_log(", masking in")
