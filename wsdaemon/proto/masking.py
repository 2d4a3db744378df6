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


def _join_unmask_python(parts: list[bytes], start: int, end: int, mask: bytes | None) -> bytes:
    """Bytes ``start:end`` of the joined ``parts``, unmasked with ``mask`` unless it is None."""
    view = memoryview(b"".join(parts))[start:end]
    return apply_mask(view, mask) if mask else bytes(view)


_apply_mask_c = speedups.apply_mask if speedups is not None else None
apply_mask = _apply_mask_c or _apply_mask_python
join_unmask = speedups.join_unmask if speedups is not None else _join_unmask_python
ACCELERATED = _apply_mask_c is not None
