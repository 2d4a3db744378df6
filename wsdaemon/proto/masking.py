"""XOR masking of RFC 6455 payloads, at C speed when the accelerator is built.

``WSDAEMON_PURE_PYTHON=1`` in the environment forces the pure-Python path
(read by :mod:`wsdaemon.switches`, applied in :mod:`wsdaemon.proto.accel`).
"""

from __future__ import annotations

from .accel import speedups


def _apply_mask_python(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``mask``; big-int XOR runs in C."""
    n = len(data)
    if n == 0:
        return b""
    repeated = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


_apply_mask_c = speedups.apply_mask if speedups is not None else None
apply_mask = _apply_mask_c or _apply_mask_python
ACCELERATED = _apply_mask_c is not None
