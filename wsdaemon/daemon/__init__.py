"""Running as a service: the command line, settings sources, logs, the pid file, process tuning."""
