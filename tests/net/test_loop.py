"""EventLoop: timers, periodic calls, signal delivery through the wake-up fd."""

import os
import signal
import socket
import time

from wsdaemon.net.loop import EVENT_READ, EventLoop


def test_timers_run_in_deadline_order_and_cancel():
    loop = EventLoop()
    seen = []
    loop.call_later(0.03, seen.append, "c")
    loop.call_later(0.01, seen.append, "a")
    cancelled = loop.call_later(0.02, seen.append, "never")
    loop.call_later(0.02, seen.append, "b")
    cancelled.cancel()
    loop.call_later(0.05, loop.stop)
    loop.run()
    loop.close()
    assert seen == ["a", "b", "c"]


def test_call_every_repeats_until_cancelled():
    loop = EventLoop()
    ticks = []
    handle = loop.call_every(0.01, lambda: ticks.append(time.monotonic()))
    loop.call_later(0.1, handle.cancel)
    loop.call_later(0.15, loop.stop)
    loop.run()
    loop.close()
    assert 4 <= len(ticks) <= 11


def test_a_failing_callback_does_not_stop_the_loop():
    loop = EventLoop()
    seen = []
    loop.call_soon(lambda: 1 / 0)
    loop.call_later(0.01, seen.append, "after")
    loop.call_later(0.02, loop.stop)
    loop.run()
    loop.close()
    assert seen == ["after"]


def test_readiness_dispatch_to_the_handler_in_the_map():
    loop = EventLoop()
    a, b = socket.socketpair()
    got = []

    class Handler:
        def on_readable(self):
            got.append(a.recv(100))
            loop.stop()

        def on_writable(self):
            pass

    loop.register(a, EVENT_READ, Handler())
    b.send(b"ping")
    loop.run()
    loop.close()
    assert got == [b"ping"]
    a.close()
    b.close()


def test_signal_is_delivered_as_a_loop_callback():
    loop = EventLoop()
    seen = []
    loop.add_signal_handler(signal.SIGUSR2, lambda: (seen.append("usr2"), loop.stop()))
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR2)
    loop.call_later(5, loop.stop)
    loop.run()
    loop.close()
    assert seen == ["usr2"]
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def test_wake_makes_the_loop_let_go_of_the_last_handler():
    """After an event the running loop's locals hold its handler; a wake-up dispatches the pipe instead."""
    import weakref

    loop = EventLoop()
    a, b = socket.socketpair()

    class Handler:
        def on_readable(self):
            a.recv(10)
            loop.unregister(a)

    handler = Handler()
    loop.register(a, EVENT_READ, handler)
    gone = weakref.ref(handler)
    del handler
    seen = []
    b.send(b"x")
    loop.call_later(0.05, lambda: (seen.append(gone() is not None), loop.wake()))
    loop.call_later(0.1, lambda: (seen.append(gone() is None), loop.stop()))
    loop.call_later(5, loop.stop)
    loop.run()
    loop.close()
    a.close()
    b.close()
    assert seen == [True, True], "held until the wake-up, let go after it"


def test_the_lean_selector_keeps_the_selectors_contract():
    import selectors

    import pytest

    from wsdaemon.net.loop import EVENT_WRITE, DefaultSelector

    def seen(ready):
        return {(key.fd, events) for key, events in ready}

    lean, base = DefaultSelector(), selectors.EpollSelector()
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        for sel in (lean, base):
            sel.register(a, EVENT_READ, "first")
            sel.register(r, EVENT_READ, "pipe")  # an int descriptor
            with pytest.raises(KeyError):
                sel.register(a, EVENT_READ)
            with pytest.raises(ValueError):
                sel.register(b, 0)
            assert sel.modify(a, EVENT_READ, "second").data == "second"  # the handler only
            assert sel.get_key(a) == (a, a.fileno(), EVENT_READ, "second")
        b.send(b"x")
        os.write(w, b"x")
        assert seen(lean.select(1)) == seen(base.select(1)) == {(a.fileno(), 1), (r, 1)}
        for sel in (lean, base):
            sel.modify(a, EVENT_READ | EVENT_WRITE, "both")  # new events: epoll_ctl MOD
        assert seen(lean.select(0)) == seen(base.select(0)) == {(a.fileno(), 3), (r, 1)}
        for sel in (lean, base):
            assert sel.unregister(r).data == "pipe"
            with pytest.raises(KeyError):
                sel.modify(b, EVENT_READ)
        a.close()  # a closed socket is still found, by the exhaustive search
        for sel in (lean, base):
            assert sel.unregister(a).data == "both" and not sel.get_map()
    finally:
        lean.close()
        base.close()
        b.close()
        os.close(r)
        os.close(w)
