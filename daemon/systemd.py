"""systemd's notify protocol (sd_notify(3)), a dozen lines over an AF_UNIX datagram socket.

Nothing happens when ``NOTIFY_SOCKET`` is unset, so the daemon runs the same outside
systemd. An abstract socket name starts with ``@``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when there is no one to tell."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """How often to send WATCHDOG=1 (half the timeout), or None when no watchdog is asked.

    Honours WATCHDOG_PID: a watchdog meant for another process is not ours to feed.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        timeout_s = int(usec) / 1_000_000
    except ValueError:
        return None
    return timeout_s / 2 if timeout_s > 0 else None
