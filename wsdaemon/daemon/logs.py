"""The daemon's log: one handler on the root logger, to stderr or to a file SIGUSR1 reopens."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO, Any

log = logging.getLogger("wsdaemon.logs")

LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


#: Attributes every LogRecord has: anything else on a record came from ``extra=`` (an event's fields).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, pid, logger, event, message, and the event's fields.

    ``event`` is the record's own (connection ``open`` / ``close`` ...) or ``log``;
    an exception's traceback is one string under ``exception``. Values that JSON
    cannot hold are written with ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "pid": record.process,
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT)


class LogSetup:
    """Owns the root handler. ``reopen()`` is what logrotate's SIGUSR1 triggers.

    With ``redirect_std`` (the daemonized ``start``), descriptors 1 and 2 follow
    the log file too, so stray prints and tracebacks land next to the log lines.
    """

    def __init__(
        self, logfile: str = "", level: str = "info", redirect_std: bool = False, log_format: str = "plain"
    ) -> None:
        self.path = logfile
        self.redirect_std = redirect_std
        stream = self._open(logfile) if logfile else sys.stderr
        self.handler = logging.StreamHandler(stream)
        self.handler.setFormatter(make_formatter(log_format))
        root = logging.getLogger()
        for old in root.handlers[:]:
            root.removeHandler(old)
        root.addHandler(self.handler)
        self.set_level(level)

    def _open(self, path: str) -> IO[str]:
        stream = open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        if self.redirect_std:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(stream.fileno(), 1)
            os.dup2(stream.fileno(), 2)
        return stream

    @staticmethod
    def set_level(level: str) -> None:
        logging.getLogger().setLevel(level.upper())

    def reopen(self, path: str | None = None) -> None:
        """Open the log file again (logrotate moved it away), or a new one at ``path``."""
        path = path or self.path
        if not path:
            return
        try:
            stream = self._open(path)
        except OSError as exc:
            log.error("cannot open log file %s: %s; logging stays where it was", path, exc.strerror)
            return
        old = self.handler.setStream(stream)
        self.path = path
        if old is not None and old not in (sys.stderr, sys.__stderr__):
            old.close()
        log.info("log file %s (re)opened", path)

    def reload(self, settings: Any, old: Any = None) -> None:
        """Follow reloaded settings: the level, and a log file that moved."""
        self.set_level(settings.log_level)
        if settings.logfile and settings.logfile != self.path:
            self.reopen(settings.logfile)
