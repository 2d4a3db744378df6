"""permessage-deflate (RFC 7692): negotiation, the RFC's examples, limits, lifetime, interop."""

from __future__ import annotations

import ast
import random
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension

from wsdaemon.proto import permessage_deflate as pmd
from wsdaemon.proto.codes import CloseCode
from wsdaemon.proto.permessage_deflate import (
    DecompressionError,
    DeflateParams,
    DeflatePolicy,
    ExtensionHeaderError,
    ExtensionOffer,
    MessageTooBig,
    PerMessageDeflate,
    accept_offer,
    compress_once,
    negotiate,
    parse_extensions,
)

HELLO = bytes.fromhex("f2 48 cd c9 c9 07 00")


def mirror(params: DeflateParams) -> DeflateParams:
    """The client's view: its compressor obeys the client_* parameters, its decompressor the server_*."""
    return DeflateParams(
        server_no_context_takeover=params.client_no_context_takeover,
        client_no_context_takeover=params.server_no_context_takeover,
        server_max_window_bits=params.client_max_window_bits,
        client_max_window_bits=params.server_max_window_bits,
    )


def zlib_deflate(data: bytes, wbits: int = 15) -> bytes:
    """A peer's compressed message: raw deflate, sync flush, trailer removed."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


# --- RFC 6455 §9.1 header grammar ------------------------------------------


def test_parse_names_params_and_quoted_values():
    value = 'foo; a=1; B="x \\"y\\" z", PerMessage-Deflate ;Client_Max_Window_Bits'
    assert parse_extensions(value) == [
        ExtensionOffer("foo", (("a", "1"), ("b", 'x "y" z'))),
        ExtensionOffer("permessage-deflate", (("client_max_window_bits", None),)),
    ]


def test_parse_whitespace_and_empty_elements():
    value = " , ,\tpermessage-deflate \t; server_max_window_bits = 10 ;client_no_context_takeover , ,"
    assert parse_extensions(value) == [
        ExtensionOffer(
            "permessage-deflate", (("server_max_window_bits", "10"), ("client_no_context_takeover", None))
        )
    ]
    assert parse_extensions("") == [] == parse_extensions(" , ")


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate;",
        "permessage-deflate; ;a",
        "permessage-deflate client",
        'permessage-deflate; a="unterminated',
        "permessage-deflate; a=",
        "permessage-deflate; a=b c",
        "permessage-deflate; =1",
        'permessage-deflate; a="\x01"',
        "perm\u00e9ssage-deflate",
        "permessage-deflate; a=1;; b",
    ],
)
def test_parse_rejects_broken_grammar(value):
    with pytest.raises(ExtensionHeaderError):
        parse_extensions(value)


# --- negotiation (RFC 7692 §5, §7.1) ---------------------------------------


def test_chrome_offer():
    params = negotiate("permessage-deflate; client_max_window_bits")
    assert params == DeflateParams(server_max_window_bits=12, client_max_window_bits=12)
    assert (
        params.response_header == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    )


def test_firefox_offer_gets_no_client_window():
    """Firefox does not offer client_max_window_bits, so we may not name it: it may use 15 bits."""
    params = negotiate("permessage-deflate")
    assert params.response_header == "permessage-deflate; server_max_window_bits=12"
    assert params.client_max_window_bits is None
    assert params.decompress_window_bits == 15


@pytest.mark.parametrize("header", [None, "", "   ", [], "x-webkit-deflate-frame", "deflate-frame; a=b"])
def test_no_offer_no_extension(header):
    assert negotiate(header) is None


def test_disabled_policy_never_negotiates():
    assert negotiate("permessage-deflate", DeflatePolicy(enabled=False)) is None


def test_unknown_extension_before_ours_is_skipped():
    params = negotiate("x-webkit-deflate-frame; no_context_takeover, permessage-deflate")
    assert params == DeflateParams(server_max_window_bits=12)


def test_first_acceptable_offer_wins():
    header = (
        "permessage-deflate; unknown_param, "
        "permessage-deflate; client_max_window_bits=10; server_no_context_takeover, "
        "permessage-deflate"
    )
    assert negotiate(header) == DeflateParams(
        server_no_context_takeover=True, server_max_window_bits=12, client_max_window_bits=10
    )


def test_header_lines_are_one_list():
    lines = ["permessage-deflate; server_max_window_bits=16", "permessage-deflate; server_max_window_bits=10"]
    assert negotiate(lines) == DeflateParams(server_max_window_bits=10)


@pytest.mark.parametrize(
    "value, bits",
    [('"10"', 10), ('"1\\0"', 10), ('"9"', 9), ("15", 12), ('"15"', 12), ("8", 8)],
)
def test_client_window_value_token_or_quoted(value, bits):
    assert negotiate(f"permessage-deflate; client_max_window_bits={value}").client_max_window_bits == bits


def test_names_are_case_insensitive():
    params = negotiate("PerMessage-Deflate; Client_Max_Window_Bits=10; SERVER_NO_CONTEXT_TAKEOVER")
    assert params == DeflateParams(
        server_no_context_takeover=True, server_max_window_bits=12, client_max_window_bits=10
    )


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover; Server_No_Context_Takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    ],
)
def test_duplicate_parameters_decline_the_offer(offer):
    assert negotiate(offer) is None
    assert negotiate(offer + ", permessage-deflate") == DeflateParams(server_max_window_bits=12)


@pytest.mark.parametrize(
    "param",
    [
        "server_max_window_bits",  # needs a value
        "server_max_window_bits=7",
        "server_max_window_bits=16",
        "server_max_window_bits=08",  # leading zero
        'server_max_window_bits="abc"',
        "server_max_window_bits=-9",
        "client_max_window_bits=7",
        "client_max_window_bits=16",
        'client_max_window_bits=""',
        "server_no_context_takeover=1",
        'client_no_context_takeover="yes"',
        "x_unknown",
        "max_window_bits=10",
    ],
)
def test_bad_parameter_declines_the_offer(param):
    assert negotiate(f"permessage-deflate; {param}") is None
    assert negotiate(f"permessage-deflate; {param}, permessage-deflate; client_max_window_bits") is not None


def test_malformed_header_is_ignored_not_an_error():
    assert negotiate('permessage-deflate, x; a="broken') is None


@pytest.mark.parametrize("asked, answered", [(15, 12), (12, 12), (10, 10), (9, 9), (8, 8)])
def test_server_window_answer_is_at_most_what_the_client_asked(asked, answered):
    params = negotiate(f"permessage-deflate; server_max_window_bits={asked}")
    assert params.server_max_window_bits == answered


def test_server_window_8_compresses_with_9_within_an_8_bit_window():
    """zlib cannot deflate with 8 bits; with 9 it never reaches back further than 250 bytes."""
    params = negotiate("permessage-deflate; server_max_window_bits=8")
    assert params.response_header == "permessage-deflate; server_max_window_bits=8"
    assert params.compress_window_bits == 9
    # Random blocks repeating every 240..269 bytes: matches 257+ back would need more than 8 bits.
    rnd = random.Random(7)
    data = b"".join(rnd.randbytes(period) * 30 for period in range(240, 270))
    compressed = PerMessageDeflate(params).compress(data)
    assert len(compressed) < len(data) * 0.7  # the repeats up to 250 bytes back were matched
    inflater = zlib.decompressobj(wbits=-8)
    assert inflater.decompress(compressed + b"\x00\x00\xff\xff") == data


def test_full_server_window_is_not_announced_unasked():
    policy = DeflatePolicy(server_max_window_bits=15)
    assert negotiate("permessage-deflate", policy).response_header == "permessage-deflate"
    asked = negotiate("permessage-deflate; server_max_window_bits=15", policy)
    assert asked.response_header == "permessage-deflate; server_max_window_bits=15"


def test_no_context_takeover_flags():
    assert negotiate("permessage-deflate; server_no_context_takeover").server_no_context_takeover
    offered = negotiate("permessage-deflate; client_no_context_takeover")
    assert offered.client_no_context_takeover
    assert not offered.server_no_context_takeover
    policy = DeflatePolicy(server_no_context_takeover=True, client_no_context_takeover=True)
    unasked = negotiate("permessage-deflate", policy)
    assert unasked.response_header == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"
    )


def test_policy_rejects_impossible_settings():
    for bad in (
        {"server_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"mem_level": 0},
        {"mem_level": 10},
        {"level": 10},
        {"compression_min_size": -1},
    ):
        with pytest.raises(ValueError):
            DeflatePolicy(**bad)


_PARAM_VALUES = st.sampled_from([None, "7", "8", "9", "10", "12", "15", "16", '"11"', "08", "x"])
_PARAM_NAMES = st.sampled_from(
    [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "Client_Max_Window_Bits",
        "other",
    ]
)


@given(
    params=st.lists(st.tuples(_PARAM_NAMES, _PARAM_VALUES), max_size=5),
    server_bits=st.integers(8, 15),
    client_bits=st.integers(8, 15),
    server_nct=st.booleans(),
    client_nct=st.booleans(),
)
def test_answer_never_exceeds_what_the_client_allowed(
    params, server_bits, client_bits, server_nct, client_nct
):
    policy = DeflatePolicy(
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
    )
    header = "; ".join(["permessage-deflate"] + [n if v is None else f"{n}={v}" for n, v in params])
    agreed = negotiate(header, policy)
    if agreed is None:
        return
    offered = dict(parse_extensions(header)[0].params)
    assert len(offered) == len(params)  # duplicates were declined
    answer = dict(parse_extensions(agreed.response_header)[0].params)
    assert set(answer) <= set(pmd._PARAM_NAMES)
    assert all(answer[flag] is None for flag in answer if flag.endswith("takeover"))
    if "server_no_context_takeover" in offered:
        assert "server_no_context_takeover" in answer
    if "client_max_window_bits" in answer:
        assert "client_max_window_bits" in offered
        assert int(answer["client_max_window_bits"]) <= client_bits
        if offered["client_max_window_bits"] is not None:
            assert int(answer["client_max_window_bits"]) <= int(offered["client_max_window_bits"].strip('"'))
    if "server_max_window_bits" in offered:
        assert int(answer["server_max_window_bits"]) <= int(offered["server_max_window_bits"].strip('"'))
    if "server_max_window_bits" in answer:
        assert int(answer["server_max_window_bits"]) <= server_bits
    assert accept_offer(parse_extensions(header)[0], policy) == agreed


# --- RFC 7692 §7.2.3 examples ----------------------------------------------


def test_7_2_3_1_hello_compressed():
    assert PerMessageDeflate(DeflateParams()).compress(b"Hello") == HELLO
    assert PerMessageDeflate(DeflateParams()).decompress(HELLO, fin=True) == b"Hello"


def test_7_2_3_1_hello_in_two_fragments():
    codec = PerMessageDeflate(DeflateParams())
    assert codec.decompress(HELLO[:3], fin=False) + codec.decompress(HELLO[3:], fin=True) == b"Hello"


def test_7_2_3_2_sharing_the_window():
    sender = PerMessageDeflate(DeflateParams())
    assert sender.compress(b"Hello") == HELLO
    assert sender.compress(b"Hello") == bytes.fromhex("f2 00 11 00 00")
    receiver = PerMessageDeflate(DeflateParams())
    assert receiver.decompress(HELLO, fin=True) == b"Hello"
    assert receiver.decompress(bytes.fromhex("f2 00 11 00 00"), fin=True) == b"Hello"


def test_7_2_3_2_without_context_takeover_every_message_stands_alone():
    sender = PerMessageDeflate(DeflateParams(server_no_context_takeover=True))
    assert sender.compress(b"Hello") == HELLO == sender.compress(b"Hello")
    receiver = PerMessageDeflate(DeflateParams(client_no_context_takeover=True))
    assert receiver.decompress(HELLO, fin=True) == b"Hello"
    with pytest.raises(DecompressionError):  # refers to the previous message's window
        receiver.decompress(bytes.fromhex("f2 00 11 00 00"), fin=True)


def test_7_2_3_3_no_compression_block():
    stored = bytes.fromhex("00 05 00 fa ff 48 65 6c 6c 6f 00")
    assert PerMessageDeflate(DeflateParams()).decompress(stored, fin=True) == b"Hello"


def test_7_2_3_4_bfinal_block():
    codec = PerMessageDeflate(DeflateParams())
    assert codec.decompress(bytes.fromhex("f3 48 cd c9 c9 07 00 00"), fin=True) == b"Hello"
    # The stream ended; the next message starts a new one.
    assert codec.zlib_memory == 0
    assert codec.decompress(HELLO, fin=True) == b"Hello"


def test_7_2_3_4_bfinal_mid_message_drops_what_follows():
    codec = PerMessageDeflate(DeflateParams())
    assert codec.decompress(bytes.fromhex("f3 48 cd c9 c9 07 00"), fin=False) == b"Hello"
    assert codec.decompress(b"\x00" * 100_000, fin=True) == b""


def test_7_2_3_5_two_deflate_blocks_in_one_message():
    two = bytes.fromhex("f2 48 05 00 00 00 ff ff ca c9 c9 07 00")
    assert PerMessageDeflate(DeflateParams()).decompress(two, fin=True) == b"Hello"


def test_7_2_3_6_empty_message():
    assert PerMessageDeflate(DeflateParams()).compress(b"") == b"\x00"
    codec = PerMessageDeflate(DeflateParams())
    assert codec.decompress(b"\x00", fin=True) == b""
    assert codec.decompress(HELLO, fin=True) == b"Hello"
    # An empty payload is no DEFLATE data; it must not disturb the shared window.
    assert codec.decompress(b"", fin=False) + codec.decompress(b"", fin=True) == b""
    assert codec.decompress(bytes.fromhex("f2 00 11 00 00"), fin=True) == b"Hello"
    fresh = PerMessageDeflate(DeflateParams())
    assert fresh.decompress(b"", fin=True) == b""
    assert fresh.zlib_memory == 0


# --- round trips -----------------------------------------------------------

_PARAMS = st.builds(
    DeflateParams,
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.none() | st.integers(8, 15),
    client_max_window_bits=st.none() | st.integers(8, 15),
)
_MESSAGES = st.lists(
    st.binary(max_size=3000) | st.text(alphabet='ab{}:," 0123', max_size=5000).map(str.encode),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(params=_PARAMS, messages=_MESSAGES, mem_level=st.integers(1, 9), level=st.integers(-1, 9))
def test_round_trip(params, messages, mem_level, level):
    """Server compresses, client inflates; client compresses, server inflates; with or without context."""
    server = PerMessageDeflate(params, DeflatePolicy(mem_level=mem_level, level=level))
    client = PerMessageDeflate(mirror(params))
    for message in messages:
        assert client.decompress(server.compress(message), fin=True) == message
        assert server.decompress(client.compress(message), fin=True) == message


def test_context_takeover_compresses_repeats_better():
    message = b'{"type": "tick", "symbol": "ABC", "price": 123.45}' * 2
    kept = PerMessageDeflate(DeflateParams())
    reset = PerMessageDeflate(DeflateParams(server_no_context_takeover=True))
    kept.compress(message)
    reset.compress(message)
    assert len(kept.compress(message)) < len(reset.compress(message)) // 3


@settings(max_examples=60, deadline=None)
@given(messages=_MESSAGES, cuts=st.lists(st.integers(0, 10_000), max_size=6), params=_PARAMS)
def test_frames_cut_anywhere(messages, cuts, params):
    sender, receiver = PerMessageDeflate(mirror(params)), PerMessageDeflate(params)
    for message in messages:
        data = sender.compress(message)
        bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        frames = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)] or [b""]
        out = [receiver.decompress(f, fin=i == len(frames) - 1) for i, f in enumerate(frames)]
        assert b"".join(out) == message


def test_split_at_every_offset():
    messages = [b"Hello", b"Hello, Hello, Hello world" * 20, bytes(range(256)) * 8, b"Hello"]
    for takeover in (True, False):
        params = DeflateParams(client_no_context_takeover=not takeover)
        sender = PerMessageDeflate(mirror(params))
        streams = [sender.compress(m) for m in messages]
        for cut in range(max(map(len, streams)) + 1):
            receiver = PerMessageDeflate(params)
            for data, message in zip(streams, messages, strict=True):
                at = min(cut, len(data))
                assert (
                    receiver.decompress(data[:at], fin=False) + receiver.decompress(data[at:], fin=True)
                    == message
                )


@pytest.mark.parametrize("out_step, in_step", [(1, 1), (7, 3), (258, 5), (1000, 64)])
def test_small_steps_give_all_output_of_each_frame(monkeypatch, out_step, in_step):
    """With tiny inflate steps every frame still yields all zlib can produce from it, split anywhere."""
    monkeypatch.setattr(pmd, "_OUT_STEP", out_step)
    monkeypatch.setattr(pmd, "_IN_STEP", in_step)
    message = b"".join(random.Random(5).randbytes(3) * n for n in range(1, 120, 9)) + b"z" * 3000
    data = zlib_deflate(message)
    for at in range(len(data) + 1):
        codec, reference = PerMessageDeflate(DeflateParams()), zlib.decompressobj(wbits=-15)
        head = codec.decompress(data[:at], fin=False)
        assert head == reference.decompress(data[:at])
        assert head + codec.decompress(data[at:], fin=True) == message


# --- limits and bad data ---------------------------------------------------


def bomb(size: int) -> bytes:
    """A compressed message of ``size`` zero bytes (a multiple of 8 MiB), about size / 1000 long.

    DEFLATE cannot beat ~1032:1, so 1 GiB needs ~1 MiB of input; each 8 MiB piece ends with a
    sync flush and refers back one byte only, so the pieces simply concatenate.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(bytes(8 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
    return (piece * (size // (8 << 20)))[:-4]


class CountingInflater:
    """A zlib decompressor that counts what it hands out."""

    make = staticmethod(zlib.decompressobj)

    def __init__(self, wbits: int) -> None:
        self._inflater = self.make(wbits=wbits)
        self.produced = 0

    def decompress(self, data, max_length=0):
        out = self._inflater.decompress(data, max_length)
        self.produced += len(out)
        return out

    def __getattr__(self, name):
        return getattr(self._inflater, name)


def test_bomb_of_1_gib_stops_at_the_limit_quickly_and_small(monkeypatch):
    data = bomb(1 << 30)
    assert len(data) < 1_100_000
    inflaters: list[CountingInflater] = []

    def counting(wbits: int) -> CountingInflater:
        inflaters.append(CountingInflater(wbits))
        return inflaters[-1]

    monkeypatch.setattr(pmd.zlib, "decompressobj", counting)
    limit = 1 << 20
    codec = PerMessageDeflate(DeflateParams(), max_message_size=limit)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(MessageTooBig) as caught:
        codec.decompress(data, fin=True)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert caught.value.code == CloseCode.MESSAGE_TOO_BIG == 1009
    assert elapsed < 1.0
    assert limit < inflaters[0].produced <= limit + 1
    # The output so far, zlib's 40 KiB and 64 KiB input slices: nowhere near 1 GiB.
    assert peak < limit + (512 << 10)
    assert codec.zlib_memory == 0


def test_10_kib_frames_of_a_bomb_stop_at_the_limit():
    data = bomb(64 << 20)
    frames = [data[i : i + 10240] for i in range(0, len(data), 10240)]
    limit = 16 << 20
    codec = PerMessageDeflate(DeflateParams(), max_message_size=limit)
    seen = 0
    started = time.perf_counter()
    with pytest.raises(MessageTooBig):
        for frame in frames:
            seen += len(codec.decompress(frame, fin=False))
    assert time.perf_counter() - started < 1.0
    assert limit - (11 << 20) < seen <= limit  # each 10 KiB frame inflates to about 10 MiB


@pytest.mark.parametrize("size", [0, 1, 100, 65535, 65536, 65537, 200_000])
def test_limit_is_exact(size):
    message = bytes(size)
    data = zlib_deflate(message)
    assert PerMessageDeflate(DeflateParams(), max_message_size=size).decompress(data, fin=True) == message
    if size:
        with pytest.raises(MessageTooBig):
            PerMessageDeflate(DeflateParams(), max_message_size=size - 1).decompress(data, fin=True)


@settings(max_examples=50, deadline=None)
@given(
    message=st.binary(min_size=1, max_size=5000) | st.integers(1, 300_000).map(bytes),
    slack=st.integers(-3, 3),
)
def test_limit_is_exact_for_any_message(message, slack):
    limit = max(0, len(message) + slack)
    codec = PerMessageDeflate(DeflateParams(), max_message_size=limit)
    if limit >= len(message):
        assert codec.decompress(zlib_deflate(message), fin=True) == message
    else:
        with pytest.raises(MessageTooBig):
            codec.decompress(zlib_deflate(message), fin=True)


def test_limit_counts_the_whole_message_not_each_frame():
    codec = PerMessageDeflate(DeflateParams(), max_message_size=1000)
    sender = PerMessageDeflate(DeflateParams())
    assert len(codec.decompress(sender.compress(bytes(600)), fin=True)) == 600
    data = sender.compress(bytes(1200))
    assert len(codec.decompress(data[: len(data) // 2], fin=False)) <= 1000
    with pytest.raises(MessageTooBig):
        codec.decompress(data[len(data) // 2 :], fin=True)


def test_no_limit():
    codec = PerMessageDeflate(DeflateParams(), max_message_size=None)
    assert codec.decompress(zlib_deflate(bytes(3 << 20)), fin=True) == bytes(3 << 20)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff",  # reserved block type 11
        bytes.fromhex("00 05 00 00 00 48 65 6c 6c 6f"),  # stored block with LEN != ~NLEN
        bytes.fromhex("f2 00 11 00 00"),  # back-reference before the start of the stream
    ],
)
def test_invalid_data_is_1007(data):
    codec = PerMessageDeflate(DeflateParams())
    with pytest.raises(DecompressionError) as caught:
        codec.decompress(data, fin=True)
    assert caught.value.code == CloseCode.INVALID_DATA == 1007
    assert "invalid compressed data" in caught.value.reason
    assert codec.zlib_memory == 0


def test_window_larger_than_agreed_is_1007():
    """A reference into an earlier message beyond the agreed window: zlib has no such bytes.

    (Within one inflate call's output zlib does not police the window: harmless, we hold no more.)
    """
    block = random.Random(3).randbytes(1000)
    first, second = block + b"x" * 20000, block  # second refers 21 KB back
    peer = zlib.compressobj(6, zlib.DEFLATED, -15)
    streams = [(peer.compress(m) + peer.flush(zlib.Z_SYNC_FLUSH))[:-4] for m in (first, second)]
    assert PerMessageDeflate(DeflateParams()).decompress(streams[0], fin=True) == first
    codec = PerMessageDeflate(DeflateParams(client_max_window_bits=10))
    assert codec.decompress(streams[0], fin=True) == first
    with pytest.raises(DecompressionError):
        codec.decompress(streams[1], fin=True)


# --- lazy zlib objects and memory ------------------------------------------


def test_idle_codec_holds_no_zlib_object():
    codec = PerMessageDeflate(negotiate("permessage-deflate; client_max_window_bits"))
    assert codec.zlib_memory == 0
    assert codec._compressor is None and codec._decompressor is None


def test_context_takeover_keeps_the_objects_between_messages():
    codec = PerMessageDeflate(DeflateParams(server_max_window_bits=12, client_max_window_bits=12))
    codec.compress(b"Hello")
    assert codec.zlib_memory == pmd.deflate_memory(12, 5) == 32768
    codec.decompress(HELLO, fin=True)
    assert codec.zlib_memory == 32768 + pmd.inflate_memory(12)
    codec.release()
    assert codec.zlib_memory == 0


def test_no_context_takeover_releases_after_each_message():
    codec = PerMessageDeflate(DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True))
    assert codec.compress(b"Hello") == HELLO
    assert codec.zlib_memory == 0
    codec.decompress(HELLO[:3], fin=False)
    assert codec.zlib_memory == pmd.inflate_memory(15)  # mid-message it must keep state
    codec.decompress(HELLO[3:], fin=True)
    assert codec.zlib_memory == 0
    assert codec._compressor is None and codec._decompressor is None


def _measured(make) -> int:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = make()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return held


def test_measured_memory_matches_the_formulas():
    payload = bytes(range(256)) * 400

    def used(params, policy=pmd.DEFAULT_POLICY):
        def make():
            codec = PerMessageDeflate(params, policy)
            codec.compress(payload)
            codec.decompress(zlib_deflate(payload, wbits=max(9, params.decompress_window_bits)), fin=True)
            return codec

        return _measured(make)

    ours = used(DeflateParams(server_max_window_bits=12, client_max_window_bits=12))
    zlib_defaults = used(DeflateParams(), DeflatePolicy(mem_level=8))
    assert ours < 64 << 10  # formula 32 KiB + 11 KiB
    assert 256 << 10 < zlib_defaults < 320 << 10  # formula 256 KiB + 39 KiB
    idle = _measured(lambda: PerMessageDeflate(DeflateParams()))
    assert idle < 1024


def test_compression_threshold():
    codec = PerMessageDeflate(DeflateParams())
    assert not codec.should_compress(63)
    assert codec.should_compress(64)
    assert PerMessageDeflate(DeflateParams(), DeflatePolicy(compression_min_size=0)).should_compress(0)


# --- broadcast -------------------------------------------------------------


def test_compress_once_matches_a_fresh_connection():
    message = b"broadcast " * 50
    assert compress_once(message) == PerMessageDeflate(DeflateParams(server_max_window_bits=12)).compress(
        message
    )
    assert compress_once(message, 8) == compress_once(message, 9)


def test_broadcast_compresses_once_per_window():
    message = b'{"event": "price", "value": 1}' * 10
    cache: dict[int, bytes] = {}
    twelve = [PerMessageDeflate(DeflateParams(server_max_window_bits=12)) for _ in range(3)]
    ten = PerMessageDeflate(DeflateParams(server_max_window_bits=10, server_no_context_takeover=True))
    out = [codec.compress_broadcast(message, cache) for codec in [*twelve, ten]]
    assert out[0] is out[1] is out[2]
    assert out[3] is not out[0]
    assert sorted(cache) == [10, 12]
    for codec in [*twelve, ten]:
        assert codec.zlib_memory == 0


def test_broadcast_between_context_takeover_messages():
    """The peer's window holds the broadcast, so our own compressor must start afresh after it."""
    params = DeflateParams()
    server, client = PerMessageDeflate(params), PerMessageDeflate(mirror(params))
    sequence = [b"own message one " * 10, None, b"own message one " * 10, None, b"own message two " * 10]
    for i, message in enumerate(sequence):
        if message is None:
            shared = f"broadcast {i} ".encode() * 10
            assert client.decompress(server.compress_broadcast(shared, {}), fin=True) == shared
        else:
            assert client.decompress(server.compress(message), fin=True) == message


# --- interop with python-websockets ----------------------------------------


@pytest.mark.parametrize(
    "factory_args",
    [
        {},
        {"client_max_window_bits": 10},
        {"client_max_window_bits": None},
        {"server_max_window_bits": 10, "client_no_context_takeover": True},
        {"server_no_context_takeover": True, "client_max_window_bits": 9},
        {"server_max_window_bits": 8},
    ],
)
def test_interop_with_websockets_client(factory_args):
    factory = ClientPerMessageDeflateFactory(**factory_args, compress_settings={"memLevel": 5})
    offer = build_extension([(factory.name, factory.get_request_params())])
    agreed = negotiate(offer)
    assert agreed is not None, offer
    [(name, response_params)] = parse_extension(agreed.response_header)
    theirs = factory.process_response_params(response_params, [])  # raises if we broke the rules
    ours = PerMessageDeflate(agreed)

    messages = [b"Hello", b"Hello", b'{"a": 1, "b": [1, 2, 3]}' * 40, bytes(range(256)) * 64, b""]
    for message in messages:
        # client -> server, whole and in three frames
        frame = theirs.encode(Frame(Opcode.BINARY, message))
        assert frame.rsv1
        assert ours.decompress(frame.data, fin=True) == message
        parts = [
            message[: len(message) // 3],
            message[len(message) // 3 : len(message) // 2],
            message[len(message) // 2 :],
        ]
        first = theirs.encode(Frame(Opcode.BINARY, parts[0], fin=False))
        middle = theirs.encode(Frame(Opcode.CONT, parts[1], fin=False))
        last = theirs.encode(Frame(Opcode.CONT, parts[2], fin=True))
        got = ours.decompress(first.data, fin=False) + ours.decompress(middle.data, fin=False)
        assert got + ours.decompress(last.data, fin=True) == message
        # server -> client
        decoded = theirs.decode(Frame(Opcode.BINARY, ours.compress(message), rsv1=True), max_size=1 << 20)
        assert decoded.data == message


def test_interop_broadcast_with_websockets_client():
    factory = ClientPerMessageDeflateFactory()
    agreed = negotiate(build_extension([(factory.name, factory.get_request_params())]))
    theirs = factory.process_response_params(parse_extension(agreed.response_header)[0][1], [])
    ours = PerMessageDeflate(agreed)
    for i, message in enumerate([b"own " * 30, b"shared " * 30, b"own " * 30]):
        data = ours.compress_broadcast(message, {}) if i == 1 else ours.compress(message)
        assert theirs.decode(Frame(Opcode.TEXT, data, rsv1=True)).data == message


# --- the module does no I/O ------------------------------------------------


def test_module_imports_only_pure_stdlib_and_the_proto_vocabulary():
    tree = ast.parse(Path(pmd.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module if node.level == 0 else "." * node.level + (node.module or ""))
    assert imported <= {"__future__", "zlib", "re", "dataclasses", "enum", "typing", ".codes", ".errors"}
