"""Runs the ``--processes`` parent (serve_processes) without a broker, for the arbiter's own tests.

``python3 -m tests.support.processes_host PORT N APP``: the CLI refuses N > 1
without --broker, which the supervisor's tests do not need.
"""

import sys

from wsdaemon.daemon.logs import LogSetup
from wsdaemon.daemon.service import prepare_socket_only, serve_processes
from wsdaemon.daemon.settings_loader import SettingsSource
from wsdaemon.settings import Settings

port, count, app_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
settings = Settings(host="127.0.0.1", port=port, processes=count, app=app_path, shutdown_grace=3.0)
source = SettingsSource(None, {})
app, sock = prepare_socket_only(source, settings)
serve_processes(source, settings, app, sock, LogSetup("", "info"))
