"""RESP: commands encoded as arrays of bulk strings, replies parsed by hiredis from any split."""

import pytest

from wsdaemon.proto.resp import ProtocolError, ReplyError, ReplyParser, encode_command


def test_commands_are_arrays_of_bulk_strings():
    assert encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert (
        encode_command("PUBLISH", "ch", b"\x00\xff")
        == b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\n\x00\xff\r\n"
    )
    assert encode_command("ZADD", "k", 1700000000123, "m") == (
        b"*4\r\n$4\r\nZADD\r\n$1\r\nk\r\n$13\r\n1700000000123\r\n$1\r\nm\r\n"
    )
    assert encode_command("SET", "é", 1.5) == b"*3\r\n$3\r\nSET\r\n$2\r\n\xc3\xa9\r\n$3\r\n1.5\r\n"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        encode_command()
    with pytest.raises(TypeError):
        encode_command("SET", None)
    with pytest.raises(TypeError):
        encode_command("SET", True)


def test_replies_come_whole_whatever_the_split():
    wire = b"+OK\r\n:42\r\n$5\r\nhello\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n-ERR wrong\r\n$-1\r\n"
    for step in (1, 2, 3, 7, len(wire)):
        parser = ReplyParser()
        got = []
        for i in range(0, len(wire), step):
            parser.feed(wire[i : i + step])
            got.extend(parser.replies())
        assert got[:5] == [b"OK", 42, b"hello", [b"message", b"c", b""], got[4]]
        assert isinstance(got[4], ReplyError) and str(got[4]) == "ERR wrong"
        assert got[5] is None and len(got) == 6
        assert parser.pending() == 0


def test_a_partial_reply_is_pending_and_garbage_is_a_protocol_error():
    parser = ReplyParser()
    parser.feed(b"$10\r\nabc")
    assert list(parser.replies()) == [] and parser.pending() > 0
    bad = ReplyParser()
    bad.feed(b"?what\r\n")
    with pytest.raises(ProtocolError):
        list(bad.replies())
