"""StreamConnection over a socket pair with 4 KiB buffers: writes that never lose data, closing, the swap.

The host is a stub (:class:`tests.support.inprocess.StubHost`): a stream
connection needs a loop, settings, deadlines and ``client_closed``, not a server.
"""

import os
import socket

import pytest

from tests.support.inprocess import SlowReader, StubHost, small_socketpair, turn
from wsdaemon.net import stream
from wsdaemon.net.loop import EVENT_READ, EVENT_WRITE
from wsdaemon.net.stream import GATHER_MIN, StreamConnection


class CountingSocket(socket.socket):
    """A socket whose ``send`` calls are recorded (their lengths) in ``sends``."""

    sends: list[int]

    @classmethod
    def take(cls, sock: socket.socket, sends: list[int]) -> "CountingSocket":
        if isinstance(sock, cls):  # a successor on the same socket
            return sock
        counting = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        counting.setblocking(False)
        counting.sends = sends
        return counting

    def send(self, data, *flags):
        self.sends.append(len(data))
        return super().send(data, *flags)

    def sendmsg(self, buffers, *args):
        self.sends.append(("sendmsg", [len(b) for b in buffers]))
        return super().sendmsg(buffers, *args)


class Recorder(StreamConnection):
    """Records what it is told and how many sends it makes; ``on_data`` runs inside each read."""

    __slots__ = ("received", "sends", "eofs", "lost", "overflows", "on_data")

    def __init__(self, host, sock, address=("127.0.0.1", 1)):
        sends: list[int] = []
        sock = CountingSocket.take(sock, sends)
        super().__init__(host, sock, address)
        self.received = bytearray()
        self.sends = sock.sends
        self.eofs = 0
        self.lost = 0
        self.overflows = 0
        self.on_data = None

    def data_received(self, data):
        self.received += data
        if self.on_data is not None:
            self.on_data(self, data)

    def eof_received(self):
        self.eofs += 1
        super().eof_received()

    def connection_lost(self, exc):
        self.lost += 1

    def on_write_overflow(self):
        self.overflows += 1
        super().on_write_overflow()


@pytest.fixture
def host():
    host = StubHost()
    yield host
    host.loop.close()


def connected(host, cls=Recorder):
    server_side, client_side = small_socketpair()
    conn = cls(host, server_side)
    host.loop.register(conn.sock, EVENT_READ, conn)
    return conn, SlowReader(host.loop, client_side)


def events_of(host, conn):
    return host.loop.selector.get_key(conn.sock).events


def test_a_write_the_kernel_does_not_take_is_kept_and_sent_on_writable(host):
    conn, client = connected(host)
    data = os.urandom(100_000)
    conn.write(data)  # the loop is not running: tried at once
    assert 0 < conn.buffered_amount < len(data)
    assert events_of(host, conn) == EVENT_READ | EVENT_WRITE
    client.pump(lambda got: len(got) >= len(data))
    assert client.take(len(data)) == data
    turn(host.loop)
    assert conn.buffered_amount == 0
    assert events_of(host, conn) == EVENT_READ  # write interest only while something waits


def test_writes_behind_a_partial_write_keep_their_order(host):
    conn, client = connected(host)
    parts = [os.urandom(n) for n in (30_000, 10, 5000, 1, 20_000)]
    for part in parts:
        conn.write(part)
    client.pump(lambda got: len(got) >= sum(map(len, parts)))
    assert bytes(client.received) == b"".join(parts)


def test_writes_made_while_a_read_is_handled_leave_in_one_send(host):
    conn, client = connected(host)
    conn.on_data = lambda c, data: [c.write(b"a" * 10), c.write(b"b" * 20), c.write(b"c" * 30)]
    client.send(b"go")
    client.pump(lambda got: len(got) >= 60)
    assert conn.sends == [60]
    assert bytes(client.received) == b"a" * 10 + b"b" * 20 + b"c" * 30


def test_a_read_ending_with_a_large_write_sends_it_with_the_others_by_sendmsg_unjoined(host):
    conn, client = connected(host)
    head, large, tail = b"h" * 10, os.urandom(GATHER_MIN + 5000), b"t" * 3
    conn.on_data = lambda c, data: [c.write(head), c.write(large)]
    client.send(b"go")
    turn(host.loop)
    assert conn.sends[0] == ("sendmsg", [len(head), len(large)])
    assert 0 < conn.buffered_amount < len(large)  # 4 KiB socket buffers: the rest waits, copied once
    conn.write(tail)  # behind the refused part, in order
    client.pump(lambda got: len(got) >= len(head) + len(large) + len(tail))
    assert bytes(client.received) == head + large + tail
    turn(host.loop)
    assert conn.buffered_amount == 0


def test_writes_of_one_loop_iteration_are_corked_into_one_send(host):
    conn, client = connected(host)

    def three_writes():
        for piece in (b"one ", b"two ", b"three"):
            conn.write(piece)

    host.loop.call_soon(three_writes)
    turn(host.loop)  # runs three_writes; the loop flushes at the end of its run
    assert conn.sends == [13]
    client.pump(lambda got: len(got) >= 13)
    assert bytes(client.received) == b"one two three"


def _replies_sent_when_each_read_runs(host, count):
    """``count`` connections readable in one turn; per read, how many of them had sent a reply."""
    pairs = [connected(host) for _ in range(count)]
    conns = [conn for conn, _ in pairs]
    seen = []

    def reply(conn, data):
        seen.append(sum(1 for other in conns if other.sends))
        conn.write(b"re:" + data)

    for conn, client in pairs:
        conn.on_data = reply
        client.send(b"x")
    turn(host.loop)
    for conn, client in pairs:
        client.pump(lambda got: len(got) >= 4)
        assert conn.sends == [4] and bytes(client.received) == b"re:x"
    return seen


def test_replies_made_while_reading_leave_together_at_the_end_of_the_turn(host):
    assert _replies_sent_when_each_read_runs(host, 5) == [0, 0, 0, 0, 0]


def test_a_full_batch_of_replies_leaves_before_the_turn_ends(host, monkeypatch):
    monkeypatch.setattr(stream, "REPLY_BATCH", 3)
    assert _replies_sent_when_each_read_runs(host, 7) == [0, 0, 0, 3, 3, 3, 6]


def test_a_lone_reply_the_kernel_takes_in_part_is_kept_and_sent_on_writable(host):
    conn, client = connected(host)
    data = os.urandom(100_000)
    conn.on_data = lambda c, _: c.write(data)
    client.send(b"go")
    turn(host.loop)  # the read; its one reply leaves at the end of the turn, the rest waits
    turn(host.loop)
    assert conn.sends[0] == len(data)
    assert 0 < conn.buffered_amount < len(data)
    assert events_of(host, conn) == EVENT_READ | EVENT_WRITE
    client.pump(lambda got: len(got) >= len(data))
    assert bytes(client.received) == data
    turn(host.loop)
    assert conn.buffered_amount == 0 and events_of(host, conn) == EVENT_READ


def test_a_lone_reply_then_close_after_flush_half_closes_once_it_is_out(host):
    conn, client = connected(host)
    conn.on_data = lambda c, _: [c.write(b"bye"), c.close_after_flush()]
    client.send(b"go")
    client.pump(lambda got: client.eof)
    assert bytes(client.received) == b"bye"


def test_the_write_in_progress_may_be_large_but_what_waits_behind_it_is_bounded(host):
    host.settings.max_write_buffer = 10_000
    conn, client = connected(host)
    fileno = conn.sock.fileno()
    conn.write(os.urandom(50_000))  # one write of any size is fine
    conn.write(b"x" * 5_000)
    conn.write(b"y" * 5_000)
    assert conn.overflows == 0 and not conn.transport_closed
    conn.write(b"z")  # 10,001 bytes queued behind the write in progress
    assert conn.overflows == 1
    assert conn.transport_closed and conn.lost == 1  # the default drops the slow consumer
    assert host.closed == [fileno]


def test_no_write_limit_when_max_write_buffer_is_zero(host):
    host.settings.max_write_buffer = 0
    conn, client = connected(host)
    for _ in range(50):
        conn.write(os.urandom(10_000))
    assert conn.overflows == 0 and conn.buffered_amount > 400_000


def test_discard_unsent_keeps_the_write_in_progress_so_the_stream_ends_on_a_boundary(host):
    conn, client = connected(host)
    first = os.urandom(40_000)
    conn.write(first)
    sent_before = len(first) - conn.buffered_amount
    assert sent_before < len(first)
    for _ in range(5):
        conn.write(b"Q" * 1000)
    dropped = conn.discard_unsent()
    assert dropped == 5000
    assert conn.buffered_amount == len(first) - sent_before
    conn.write(b"END")
    client.pump(lambda got: len(got) >= len(first) + 3)
    assert bytes(client.received) == first + b"END"


def test_discard_unsent_drops_corked_writes_too(host):
    conn, client = connected(host)

    def writes():
        conn.write(b"kept?")
        conn.discard_unsent()
        conn.write(b"after")

    host.loop.call_soon(writes)
    client.pump(lambda got: len(got) >= 5)
    client.idle(3)
    assert bytes(client.received) == b"after"


def test_close_after_flush_sends_everything_then_half_closes_and_drains(host):
    conn, client = connected(host)
    data = os.urandom(60_000)
    conn.write(data)
    conn.close_after_flush()
    assert not conn.transport_closed  # the data is still going out
    client.pump(lambda got: len(got) >= len(data))
    client.pump(lambda got: client.eof)  # our side's FIN after the last byte
    assert bytes(client.received) == data
    assert conn in host.deadlines  # the drain is bounded
    assert not conn.transport_closed
    client.sock.send(b"late bytes are read and ignored")
    turn(host.loop)
    assert conn.received == b""
    client.sock.shutdown(socket.SHUT_WR)  # the peer's EOF ends the drain
    turn(host.loop)
    assert conn.transport_closed and conn.lost == 1 and conn.eofs == 0
    assert conn not in host.deadlines


def test_a_drain_the_peer_never_ends_is_closed_at_its_deadline(host):
    conn, client = connected(host)
    conn.close_after_flush()
    assert conn in host.deadlines
    conn.deadline = 0.0
    host.deadlines.sweep()
    assert conn.transport_closed and conn.lost == 1


def test_eof_from_the_peer_closes_and_reports_the_descriptor(host):
    conn, client = connected(host)
    fileno = conn.sock.fileno()
    client.sock.shutdown(socket.SHUT_WR)
    turn(host.loop)
    assert conn.eofs == 1 and conn.transport_closed and conn.lost == 1
    assert host.closed == [fileno]
    assert fileno not in host.loop.selector.get_map() and conn.sock.fileno() == -1


def test_abort_drops_the_connection_and_its_unsent_bytes_at_once(host):
    conn, client = connected(host)
    conn.write(os.urandom(100_000))
    conn.abort()
    conn.abort()
    assert conn.transport_closed and conn.lost == 1 and conn.buffered_amount == 0
    conn.write(b"ignored")
    client.pump(lambda got: client.eof)
    assert len(client.received) < 100_000


def test_a_reset_by_the_peer_aborts(host):
    conn, client = connected(host)
    conn.write(os.urandom(100_000))
    client.sock.close()
    for _ in range(5):
        turn(host.loop)
    assert conn.transport_closed and conn.lost == 1


# -- the swap ------------------------------------------------------------------


class Successor(Recorder):
    __slots__ = ()


def test_hand_over_moves_unsent_bytes_corked_writes_and_write_interest(host):
    conn, client = connected(host)
    first = os.urandom(30_000)
    conn.write(first)  # partly sent, the rest in the outbound buffer
    conn.last_seen = 123.0
    moved = []

    def swap():
        conn.write(b"corked by the loop")
        successor = Successor(host, conn.sock)
        moved.append(successor)
        assert conn.hand_over(successor) == b""
        successor.write(b" and the successor's")

    host.loop.call_soon(swap)
    turn(host.loop)
    (successor,) = moved
    assert conn.transport_closed and conn.handed_over and conn.buffered_amount == 0
    assert host.loop.selector.get_key(conn.sock).data is successor
    assert successor.last_seen == 123.0
    assert events_of(host, successor) == EVENT_READ | EVENT_WRITE
    expected = first + b"corked by the loop and the successor's"
    client.pump(lambda got: len(got) >= len(expected))
    assert bytes(client.received) == expected
    client.send(b"to the successor")
    client.idle(2)
    assert successor.received == b"to the successor" and conn.received == b""


def test_hand_over_during_a_read_keeps_the_reads_writes_first(host):
    """What the old handler wrote while handling the read leaves before the successor's writes."""
    conn, client = connected(host)
    successors = []

    def upgrade(c, data):
        c.write(b"answer;")
        successor = Successor(host, c.sock)
        successors.append(successor)
        c.hand_over(successor)
        successor.write(b"101;")

    conn.on_data = upgrade
    client.send(b"request")
    client.pump(lambda got: len(got) >= 11)
    assert bytes(client.received) == b"answer;101;"
    assert successors[0].sends == [11]  # still one send for the whole read


def test_hand_over_outside_a_running_loop(host):
    conn, client = connected(host)
    successor = Successor(host, conn.sock)

    def upgrade(c, data):
        c.write(b"answer;")
        c.hand_over(successor)
        successor.write(b"101;")

    conn.on_data = upgrade
    conn.feed(b"request")  # not from the loop: nothing may wait for a loop iteration
    client.pump(lambda got: len(got) >= 11)
    assert bytes(client.received) == b"answer;101;"


def test_hand_over_refuses_another_socket_or_a_closing_connection(host):
    conn, client = connected(host)
    other, _peer = small_socketpair()
    with pytest.raises(ValueError):
        conn.hand_over(Successor(host, other))
    conn.close_after_flush()
    with pytest.raises(RuntimeError):
        conn.hand_over(Successor(host, conn.sock))
    other.close()
    _peer.close()


def test_a_handed_over_connection_no_longer_touches_the_socket(host):
    conn, client = connected(host)
    successor = Successor(host, conn.sock)
    conn.hand_over(successor)
    conn.write(b"stale")
    conn.close_transport()
    conn.abort()
    assert conn.lost == 0 and host.closed == []
    successor.write(b"fresh")
    client.pump(lambda got: len(got) >= 5)
    assert bytes(client.received) == b"fresh"
