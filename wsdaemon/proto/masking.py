"""XOR masking of RFC 6455 payloads, at C speed when the accelerator is built.

``WSDAEMON_PURE_PYTHON=1`` in the environment forces the pure-Python path
(read by :mod:`wsdaemon.switches`).
"""

from __future__ import annotations

from ..switches import PURE_PYTHON


def _apply_mask_python(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``mask``; big-int XOR runs in C."""
    n = len(data)
    if n == 0:
        return b""
    repeated = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


_apply_mask_c = None
if not PURE_PYTHON:
    try:  # pragma: no cover - depends on the build
        from ._speedups import apply_mask as _apply_mask_c
    except ImportError:  # pragma: no cover
        pass

apply_mask = _apply_mask_c or _apply_mask_python
ACCELERATED = _apply_mask_c is not None
