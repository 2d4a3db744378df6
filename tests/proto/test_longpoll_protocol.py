"""The long-polling protocol without sockets: encoding, parsing, sequence numbers, acks, close."""

import json

import pytest

from wsdaemon.proto import longpoll
from wsdaemon.proto.errors import ProtocolError
from wsdaemon.proto.longpoll import (
    EV_BINARY,
    EV_CLOSE,
    EV_TEXT,
    encode_batch,
    encode_item,
    encode_payload,
    encode_response,
    parse_ack,
    parse_items,
    receive_items,
)
from wsdaemon.proto.session import BufferFull, SequenceGap, SessionState

# -- encoding -------------------------------------------------------------------


def test_encode_text_keeps_unicode_unescaped():
    assert encode_payload("привет") == '"text":"привет"'.encode()
    assert encode_payload('a"b\\c\n') == b'"text":"a\\"b\\\\c\\n"'


def test_encode_binary_is_base64():
    assert encode_payload(b"\x00\x01\x02") == b'"binary":"AAEC"'
    assert encode_payload(bytearray(b"")) == b'"binary":""'
    assert encode_payload(memoryview(b"\xff")) == b'"binary":"/w=="'


def test_encode_refuses_other_types_and_lone_surrogates():
    with pytest.raises(TypeError):
        encode_payload(42)
    with pytest.raises(UnicodeEncodeError):
        encode_payload("\ud800")


def test_encode_close_and_item_and_batch():
    assert longpoll.encode_close(1000, "bye") == b'"close":1000,"reason":"bye"'
    assert longpoll.encode_close(None) == b'"close":null,"reason":""'
    assert encode_item(7, b'"text":"x"') == b'{"seq":7,"text":"x"}'
    batch = encode_batch(3, [b'{"seq":1,"text":"a"}', b'{"seq":2,"binary":"AA=="}'], session="S", hold=25.0)
    assert batch == (
        b'{"ack":3,"session":"S","hold":25.0,"messages":[{"seq":1,"text":"a"},{"seq":2,"binary":"AA=="}]}'
    )
    assert json.loads(batch)["messages"][1] == {"seq": 2, "binary": "AA=="}
    assert encode_batch(0, []) == b'{"ack":0,"messages":[]}'


def test_batch_round_trips_through_json():
    texts = ["", "plain", "привет, мир ✓ 🎮", "\x00\x1f", "</script>", "\u2028"]
    items = [encode_item(i + 1, encode_payload(t)) for i, t in enumerate(texts)]
    doc = json.loads(encode_batch(0, items))
    assert [m["text"] for m in doc["messages"]] == texts
    assert [m["seq"] for m in doc["messages"]] == list(range(1, len(texts) + 1))


# -- parsing --------------------------------------------------------------------


def body(*items):
    return json.dumps({"messages": list(items)}).encode()


def test_parse_items_text_binary_close():
    items = parse_items(
        body(
            {"seq": 1, "text": "hé"},
            {"seq": 2, "binary": "AAEC"},
            {"seq": 3, "close": 4000, "reason": "bye"},
        ),
        1000,
    )
    assert [(i.seq, i.kind, i.value, i.reason) for i in items] == [
        (1, EV_TEXT, "hé", ""),
        (2, EV_BINARY, b"\x00\x01\x02", ""),
        (3, EV_CLOSE, 4000, "bye"),
    ]


def test_parse_close_without_code_is_1005():
    (item,) = parse_items(body({"seq": 1, "close": None}), 1000)
    assert (item.kind, item.value, item.reason) == (EV_CLOSE, 1005, "")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"messages": {}}',
        b'{"nothing": []}',
        body(1),
        body({"text": "no seq"}),
        body({"seq": 0, "text": "x"}),
        body({"seq": -1, "text": "x"}),
        body({"seq": "1", "text": "x"}),
        body({"seq": True, "text": "x"}),
        body({"seq": 1.5, "text": "x"}),
        body({"seq": 1}),
        body({"seq": 1, "text": "x", "binary": "AA=="}),
        body({"seq": 1, "text": 5}),
        body({"seq": 1, "text": "\ud800"}),
        body({"seq": 1, "binary": "not base64!"}),
        body({"seq": 1, "binary": "AAE"}),
        body({"seq": 1, "binary": 3}),
        body({"seq": 1, "close": 999}),
        body({"seq": 1, "close": 1005}),
        body({"seq": 1, "close": 1006}),
        body({"seq": 1, "close": 5000}),
        body({"seq": 1, "close": "1000"}),
        body({"seq": 1, "close": 1000, "reason": "x" * 124}),
        body({"seq": 1, "close": 1000, "reason": 5}),
        body({"seq": 1, "close": None, "reason": "reason without code"}),
        body({"seq": 1, "text": "a"}, {"seq": 3, "text": "b"}),
        body({"seq": 2, "text": "a"}, {"seq": 1, "text": "b"}),
    ],
)
def test_parse_items_refuses_malformed_bodies(raw):
    with pytest.raises(ProtocolError) as info:
        parse_items(raw, 1000)
    assert info.value.status == 400


def test_parse_items_enforces_message_size():
    parse_items(body({"seq": 1, "text": "é" * 5}), 10)
    with pytest.raises(ProtocolError) as info:
        parse_items(body({"seq": 1, "text": "é" * 6}), 10)
    assert (info.value.status, info.value.code) == (413, 1009)
    with pytest.raises(ProtocolError):
        parse_items(body({"seq": 1, "binary": "AAAAAAAAAAAAAAAA"}), 10)


def test_close_reason_limit_counts_bytes():
    parse_items(body({"seq": 1, "close": 1000, "reason": "я" * 61}), 1000)
    with pytest.raises(ProtocolError):
        parse_items(body({"seq": 1, "close": 1000, "reason": "я" * 62}), 1000)


def test_parse_ack():
    assert parse_ack({}) == 0
    assert parse_ack({"ack": "12"}) == 12
    for bad in ("-1", "x", "", "1e3", "١"):
        with pytest.raises(ProtocolError):
            parse_ack({"ack": bad})


# -- the session's numbers shown as long-polling items --------------------------------


def messages(state):
    return json.loads(encode_response(state))["messages"]


def test_outbound_numbering_resend_and_ack():
    p = SessionState()
    assert p.push("a") == 1
    assert p.push(b"\x01") == 2
    assert [m["seq"] for m in messages(p)] == [1, 2]
    # The response was lost: a poll with the old ack gets everything again.
    assert p.acknowledge(0) is False
    assert [m["seq"] for m in messages(p)] == [1, 2]
    p.acknowledge(1)
    assert messages(p) == [{"seq": 2, "binary": "AQ=="}]
    assert p.bytes == 1  # payload bytes, not JSON
    # A stale poll (lower ack) changes nothing.
    p.acknowledge(0)
    assert [m["seq"] for m in messages(p)] == [2]
    p.acknowledge(2)
    assert not p.entries and p.bytes == 0
    with pytest.raises(ProtocolError):
        p.acknowledge(3)


def test_a_response_marks_entries_sent_so_a_keyed_send_no_longer_replaces_them():
    p = SessionState()
    p.push("state 1", key="pos")
    p.push("state 2", key="pos")  # unsent: replaced in place
    assert messages(p) == [{"seq": 1, "text": "state 2"}]
    assert p.push("state 3", key="pos") == 2  # the client may have seq 1 already: a new number
    assert messages(p) == [{"seq": 1, "text": "state 2"}, {"seq": 2, "text": "state 3"}]


def test_queue_limit():
    p = SessionState(max_bytes=20)
    p.push("x" * 10)
    p.push("y" * 10)
    with pytest.raises(BufferFull):
        p.push("z")
    p.acknowledge(1)
    p.push("z" * 10)


def test_server_close_is_last_and_confirmed_by_ack():
    p = SessionState()
    p.push("last")
    assert p.push_close(4000, "bye") == 2
    assert p.push_close(1000) == 2  # once only
    with pytest.raises(ProtocolError):
        p.push("after close")
    assert messages(p)[-1] == {"seq": 2, "close": 4000, "reason": "bye"}
    assert p.acknowledge(1) is False
    assert p.acknowledge(2) is True


def test_close_can_drop_the_queue():
    p = SessionState()
    p.push("a")
    p.push_close(1008, "slow consumer", drop=True)
    assert messages(p) == [{"seq": 2, "close": 1008, "reason": "slow consumer"}]
    assert p.bytes == 0


def items(*specs):
    return parse_items(body(*specs), 0)


def test_inbound_in_order_and_retries_skipped():
    p = SessionState()
    events = receive_items(p, items({"seq": 1, "text": "a"}, {"seq": 2, "binary": "AA=="}), False)
    assert events == [(EV_TEXT, "a"), (EV_BINARY, b"\x00")]
    assert p.received_seq == 2
    # The same post again (its answer was lost): nothing new.
    assert receive_items(p, items({"seq": 1, "text": "a"}, {"seq": 2, "binary": "AA=="}), False) == []
    # A retry that overlaps new messages delivers only the new ones.
    assert receive_items(p, items({"seq": 2, "binary": "AA=="}, {"seq": 3, "text": "c"}), False) == [
        (EV_TEXT, "c")
    ]
    assert receive_items(p, [], False) == []


def test_inbound_gap_is_refused():
    p = SessionState()
    receive_items(p, items({"seq": 1, "text": "a"}), False)
    with pytest.raises(SequenceGap) as info:
        receive_items(p, items({"seq": 3, "text": "c"}), False)
    assert (info.value.status, info.value.expected) == (409, 2)
    assert p.received_seq == 1


def test_nothing_after_the_clients_close():
    p = SessionState()
    events = receive_items(
        p,
        items(
            {"seq": 1, "text": "a"}, {"seq": 2, "close": 1000, "reason": "bye"}, {"seq": 3, "text": "late"}
        ),
        False,
    )
    assert events == [(EV_TEXT, "a"), (EV_CLOSE, 1000, "bye")]
    assert receive_items(p, items({"seq": 4, "text": "later"}), True) == []
    assert receive_items(p, items({"seq": 2, "close": 1000, "reason": "bye"}), True) == []


def test_close_without_code():
    p = SessionState()
    p.push_close(None)
    assert messages(p) == [{"seq": 1, "close": None, "reason": ""}]


def test_keyed_items_are_replaced_in_place_while_no_response_carried_them():
    p = SessionState()
    p.push("chat 1")
    assert p.push("pos 1", key="pos") == 2
    assert p.push("other", key="other") == 3
    assert p.push("pos 2", key="pos") == 2  # same number, new content
    assert p.replaced == 1
    assert messages(p) == [
        {"seq": 1, "text": "chat 1"},
        {"seq": 2, "text": "pos 2"},
        {"seq": 3, "text": "other"},
    ]
    assert p.bytes == len("chat 1") + len("pos 2") + len("other")
    # The response above carried them: no longer replaceable (the client may have them).
    assert p.push("pos 3", key="pos") == 4
    assert p.uncarried


def test_an_unkeyed_item_fixes_the_keyed_ones_before_it():
    p = SessionState()
    p.push("pos 1", key="pos")
    p.push("chat")
    assert p.push("pos 2", key="pos") == 3
    assert p.replaced == 0 and len(p.entries) == 3


def test_a_replacement_that_would_overflow_the_queue_is_refused():
    p = SessionState(max_bytes=40)
    p.push("a", key="k")
    with pytest.raises(BufferFull):
        p.push("b" * 100, key="k")
