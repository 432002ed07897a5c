"""Loopback ports for test servers that are killed and restarted on the same port.

Why not `bind(("127.0.0.1", 0))`: the kernel then hands out a port from its *ephemeral* range, the
same range it draws client source ports from. A server restarted on such a port can find it taken by
some unrelated client connection that happened to get that number as its local port (bind fails with
EADDRINUSE even with SO_REUSEADDR, seen in CI when a broker restarted mid-test), and a client
reconnecting to a port nobody listens on can even connect to itself (TCP simultaneous open). Ports
below the ephemeral range are never handed out as source ports, so neither can happen.
"""
import random
import socket

_FALLBACK_EPHEMERAL = (32768, 60999)   # Linux default (net.ipv4.ip_local_port_range)
LOWEST_PORT = 20000                     # well clear of registered service ports people run locally


def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return _FALLBACK_EPHEMERAL


def _candidates():
    lo, hi = ephemeral_range()
    if lo - 1 > LOWEST_PORT:
        return LOWEST_PORT, lo - 1
    if hi + 1 < 65535:
        return hi + 1, 65535
    return None


def _bindable(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host="127.0.0.1", attempts=200):
    """A TCP port nobody holds right now, outside the ephemeral range when the system leaves room."""
    span = _candidates()
    if span is not None:
        rng = random.SystemRandom()    # independent of tests that seed `random`
        for _ in range(attempts):
            port = rng.randint(*span)
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:   # no room: let the kernel pick
        s.bind((host, 0))
        return s.getsockname()[1]
