"""The envelope daemons publish on Redis channels: kind, origin, optional key, payload."""

import pytest

from wsdaemon.proto.broker_envelope import (
    BINARY,
    JOIN,
    TEXT,
    EnvelopeError,
    decode_envelope,
    encode_envelope,
    encode_message,
)


def test_messages_round_trip_with_and_without_a_key():
    env = decode_envelope(encode_message(b"node-a", "héllo"))
    assert env == (TEXT, b"node-a", None, "héllo".encode())
    env = decode_envelope(encode_message(b"n", b"\x00\x01", key="pos"))
    assert env == (BINARY, b"n", "pos", b"\x00\x01")
    env = decode_envelope(encode_envelope(JOIN, b"n", b'["n","1","u"]'))
    assert env.kind == JOIN and env.payload == b'["n","1","u"]'
    assert decode_envelope(encode_message(b"n", "")) == (TEXT, b"n", None, b"")


@pytest.mark.parametrize(
    "data", [b"", b"x\x01n\x00\x00", b"t\x09abc", b"t\x01n\x00\x09ab", b"t\x01n\x00\x02\xff\xfe"]
)
def test_what_is_not_an_envelope_is_refused(data):
    with pytest.raises(EnvelopeError):
        decode_envelope(data)


def test_a_key_too_long_to_cross_is_refused():
    with pytest.raises(ValueError):
        encode_message(b"n", "x", key="k" * 70000)
