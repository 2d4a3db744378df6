"""Keyed (conflated) writes of a StreamConnection: replaced in place while unsent, order kept.

Over a socket pair with 4 KiB buffers and a loop the test drives: a keyed write
is replaceable while corked in the current iteration and, once the outbound
buffer is backlogged, while it waits in the held map; it becomes ordinary bytes
when an unkeyed write must follow it or when the buffer drains.
"""

import os

import pytest

from tests.net.test_stream import connected
from tests.support.inprocess import StubHost, turn

FILL = 300_000


@pytest.fixture
def host():
    host = StubHost(max_write_buffer=64 * 1024)
    yield host
    host.loop.close()


def in_loop(host, fn) -> None:
    """Run ``fn`` as a callback of one loop iteration (writes are corked as in any callback)."""
    host.loop.call_soon(fn)
    turn(host.loop)


def backlogged(host):
    conn, client = connected(host)
    filler = os.urandom(FILL)
    conn.write(filler)  # not in the loop: sent at once, the rest waits in the buffer
    assert conn._wbuf
    return conn, client, filler


def receive_after(client, filler: bytes, n: int) -> bytes:
    client.chunk = 65536
    client.pump(lambda got: len(got) >= len(filler) + n)
    assert client.take(len(filler)) == filler
    return bytes(client.received)


def test_corked_keyed_writes_replace_each_other_in_place(host):
    conn, client = connected(host)

    def writes():
        conn.write_keyed(b"[k1 a]", "k1")
        conn.write_keyed(b"[k2 a]", "k2")
        conn.write_keyed(b"[k1 b]", "k1")
        conn.write_keyed(b"[k1 c]", "k1")

    in_loop(host, writes)
    client.pump(lambda got: len(got) >= 12)
    assert bytes(client.received) == b"[k1 c][k2 a]"
    assert conn.replaced == 2


def test_an_unkeyed_write_fixes_the_keyed_ones_before_it(host):
    conn, client = connected(host)

    def writes():
        conn.write_keyed(b"[k a]", "k")
        conn.write(b"[u]")
        conn.write_keyed(b"[k b]", "k")
        conn.write_keyed(b"[k c]", "k")

    in_loop(host, writes)
    client.pump(lambda got: len(got) >= 13)
    assert bytes(client.received) == b"[k a][u][k c]"
    assert conn.replaced == 1


def test_backlogged_keyed_writes_wait_and_only_the_newest_leaves(host):
    conn, client, filler = backlogged(host)
    for i in range(1000):
        conn.write_keyed(b"[state %04d]" % i, "state")
    conn.write_keyed(b"[other]", "other")
    assert conn.replaced == 999
    assert conn.overflows == 0
    waiting = len(conn._wbuf)
    assert conn.buffered_amount == waiting + len(b"[state 0999]") + len(b"[other]")
    assert receive_after(client, filler, 19) == b"[state 0999][other]"
    turn(host.loop)
    assert conn.buffered_amount == 0 and conn._keyed is None


def test_backlogged_order_is_kept_around_unkeyed_writes(host):
    conn, client, filler = backlogged(host)
    conn.write_keyed(b"[k a]", "k")
    conn.write(b"[u1]")
    conn.write_keyed(b"[k b]", "k")
    conn.write_keyed(b"[k c]", "k")
    assert receive_after(client, filler, 14) == b"[k a][u1][k c]"


def test_writes_of_a_read_keep_their_order_while_backlogged(host):
    conn, client, filler = backlogged(host)

    def on_data(c, data):
        c.write(b"[u1]")
        c.write_keyed(b"[k a]", "k")
        c.write(b"[u2]")
        c.write_keyed(b"[k b]", "k")
        c.write_keyed(b"[k c]", "k")

    conn.on_data = on_data
    client.send(b"go")
    turn(host.loop)
    assert receive_after(client, filler, 18) == b"[u1][k a][u2][k c]"


def test_held_keyed_bytes_are_bounded_by_max_write_buffer(host):
    conn, client, filler = backlogged(host)
    for i in range(40):
        conn.write_keyed(os.urandom(2048), f"key {i}")  # 80 KiB in 40 keys, over 64 KiB
    assert conn.overflows == 1
    assert conn.transport_closed


def test_discard_unsent_drops_the_held_keyed_writes(host):
    conn, client, filler = backlogged(host)
    conn.write_keyed(b"x" * 100, "k")
    dropped = conn.discard_unsent()
    assert dropped >= 100
    assert conn._keyed is None and conn._keyed_bytes == 0


def test_not_in_a_loop_and_not_backlogged_a_keyed_write_is_sent_at_once(host):
    conn, client = connected(host)
    conn.write_keyed(b"now", "k")
    assert conn.buffered_amount == 0
    client.pump(lambda got: got == b"now")
