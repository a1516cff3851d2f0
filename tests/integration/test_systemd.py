"""systemd integration: the notify protocol on real sockets, and the unit file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from daemon import systemd
from daemon.settings import Settings
from tests.conftest import ORDERD, ROOT


def test_notify_sends_the_state_to_a_socket_path(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        assert systemd.notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": address})
        assert listener.recv(1024) == b"READY=1\nSTATUS=up"


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"orderd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        assert systemd.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(1024) == b"WATCHDOG=1"


def test_without_a_socket_nothing_is_sent() -> None:
    assert systemd.notify("READY=1", {}) is False


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_the_watchdog_interval_is_half_the_timeout(
    environ: dict[str, str], interval: float | None
) -> None:
    assert systemd.watchdog_interval_s(environ) == interval


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    unit = (ROOT / "systemd" / "orderd.service").read_text()
    # The unit names the installed path; here it points at this checkout's orderd.
    local = tmp_path / "orderd.service"
    local.write_text(unit.replace("/opt/orderd/.venv/bin/orderd", str(ORDERD)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    for needed in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "EnvironmentFile=",
        "ReadWritePaths=",
        "User=orderd",
    ):
        assert needed in unit, needed
    stop = next(line for line in unit.splitlines() if line.startswith("TimeoutStopSec="))
    assert int(stop.split("=")[1]) > Settings().daemon.shutdown_grace_s
