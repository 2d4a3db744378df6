"""The optional C accelerator (``_speedups.c``), imported once for every codec that uses it.

``speedups`` is None when the extension is not built or ``WSDAEMON_PURE_PYTHON=1``
is set (read by :mod:`wsdaemon.switches`); each caller then keeps its Python version.
"""

from __future__ import annotations

from types import ModuleType

from ..switches import PURE_PYTHON

speedups: ModuleType | None = None
if not PURE_PYTHON:
    try:  # pragma: no cover - depends on the build
        from . import _speedups as speedups  # noqa: F401 - re-exported
    except ImportError:  # pragma: no cover
        pass
