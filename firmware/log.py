"""Tiny ring logger: the last N messages in RAM, optionally echoed to the console.

Allocation-aware: the ring is a list of N slots made once; a message string is made by the caller
only on rare events (state transitions, faults), never per cycle.

    from firmware import log
    log.LOG.info("state idle->charge: current 5000 mA")

`LOG.lines()` returns the messages oldest first (for the REPL or a status report).
"""
from micropython import const

_DEFAULT_SLOTS = const(32)


class RingLog:
    def __init__(self, slots=_DEFAULT_SLOTS, echo=False):
        if slots < 1:
            raise ValueError("slots must be >= 1, got %d" % slots)
        self._ring = [None] * slots
        self._next = 0
        self.count = 0          # messages logged since boot (the ring keeps the last `slots`)
        self.echo = echo

    def info(self, msg):
        self._ring[self._next] = msg
        self._next = (self._next + 1) % len(self._ring)
        self.count += 1
        if self.echo:
            print(msg)

    def lines(self):
        n = len(self._ring)
        out = []
        for i in range(n):
            m = self._ring[(self._next + i) % n]
            if m is not None:
                out.append(m)
        return out

    def last(self):
        m = self._ring[(self._next - 1) % len(self._ring)]
        return m

    def clear(self):
        for i in range(len(self._ring)):
            self._ring[i] = None
        self._next = 0


LOG = RingLog()
