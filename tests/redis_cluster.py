"""A Redis Cluster of the test's own: ``redis-server`` processes in cluster mode on free
127.0.0.1 ports, joined by ``redis-cli --cluster create``, and ways to fail a master over.

``redis_cluster`` is one cluster per test process (per xdist worker), for tests that only
read and write under keys of their own; ``redis_cluster_own`` is a cluster for one test,
for tests that fail over or kill nodes. Every wait is bounded and, when it runs out, says
what it waited for along with the last CLUSTER INFO and CLUSTER NODES it saw.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
SLOTS = 16384
NODE_TIMEOUT_MS = 1000  # how long a silent master takes to be called failed
START_TIMEOUT_S = 10.0  # one process answering PING
CREATE_TIMEOUT_S = 60.0  # redis-cli --cluster create
SETTLE_TIMEOUT_S = 30.0  # every node agreeing on a whole, healthy cluster
POLL_S = 0.05


class ClusterError(RuntimeError):
    """The cluster did not get where it was expected to within its bound."""


class PortTaken(ClusterError):
    """A node could not listen: something took its port after it was found free."""


@dataclass(frozen=True)
class Node:
    """A node as one CLUSTER NODES reply shows it."""

    id: str
    host: str
    port: int
    flags: frozenset[str]
    master_id: str | None  # the master a replica follows
    slots: int  # how many hash slots it serves

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags


def parse_nodes(text: str) -> list[Node]:
    """The nodes of a CLUSTER NODES reply (``id ip:port@bus flags master ... slots``)."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split(",")[0]  # ip:port@bus, then an optional hostname
        host, _, ports = address.rpartition(":")
        nodes.append(
            Node(
                id=fields[0],
                host=host or HOST,
                port=int(ports.split("@")[0]),
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                slots=sum(_slot_count(part) for part in fields[8:]),
            )
        )
    return nodes


def _slot_count(part: str) -> int:
    if part.startswith("["):  # a slot being imported or migrated, still served elsewhere
        return 0
    first, _, last = part.partition("-")
    return int(last or first) - int(first) + 1


def parse_info(text: str) -> dict[str, str]:
    """``field:value`` lines (CLUSTER INFO) as a dict."""
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, _, value in pairs}


def find_binaries() -> tuple[Path, Path]:
    """``redis-server`` on PATH (7.0 or newer: ``--cluster-port``) and its ``redis-cli``."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    version = subprocess.run(
        [server, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.search(r"v=(\d+)\.", version)
    if found is None or int(found.group(1)) < 7:
        raise RuntimeError(f"{server} is older than 7.0: {version.strip()}")
    beside = Path(server).with_name("redis-cli")
    cli = str(beside) if beside.exists() else shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not installed (Debian: apt-get install redis-tools)")
    return Path(server), Path(cli)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def ask(port: int, *command: str) -> Any:
    """One command to one node, on a connection of its own, without retries: a node that
    is down fails at once."""
    client = redis.Redis(
        HOST, port, decode_responses=True, socket_timeout=2, socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )  # fmt: skip
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.close()


class Cluster:
    """The processes of one cluster, the folder they keep their files in, and what the
    test does to them. Nodes are told apart by port."""

    def __init__(self, folder: Path, masters: int, replicas_per_master: int) -> None:
        self.folder = folder
        self.master_count = masters
        self.replicas_per_master = replicas_per_master
        self._server, self._cli = find_binaries()
        self.ports: list[int] = []  # every node, alive or not, in start order
        self._bus_ports: dict[int, int] = {}
        self._processes: dict[int, subprocess.Popen[bytes]] = {}  # the live ones
        self._pids: set[int] = set()  # every process ever started, to check none is left

    # --- what a test reads --------------------------------------------------------------

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every live node."""
        return [(HOST, port) for port in self.ports if port in self._processes]

    @property
    def url(self) -> str:
        """A live node's URL, for ``RedisCluster.from_url``: the client learns the other
        nodes from it (redis-py takes one host in a URL, and database 0 only)."""
        host, port = self.startup_nodes[0]
        return f"redis://{host}:{port}/0"

    def nodes(self, port: int | None = None) -> list[Node]:
        """The cluster as the node on ``port`` (else the first live one) sees it."""
        return parse_nodes(ask(port or self.startup_nodes[0][1], "CLUSTER", "NODES"))

    def info(self, port: int) -> dict[str, str]:
        """CLUSTER INFO of the node on ``port``."""
        return parse_info(ask(port, "CLUSTER", "INFO"))

    def masters(self) -> list[Node]:
        """The masters that serve slots, by port."""
        return sorted((n for n in self.nodes() if n.is_master and n.slots), key=lambda n: n.port)

    def replica_of(self, master: Node) -> Node:
        """A live replica of ``master``."""
        for node in self.nodes():
            if node.master_id == master.id and node.port in self._processes:
                return node
        raise ClusterError(f"no live replica of {master.port}:\n{self._snapshot()}")

    def pid(self, node: Node) -> int:
        """The process id of a live node."""
        return self._processes[node.port].pid

    # --- starting and stopping ----------------------------------------------------------

    def start(self) -> None:
        """Start every process, join them into one cluster, and wait until it is healthy."""
        self.folder.mkdir(parents=True, exist_ok=True)
        count = self.master_count * (1 + self.replicas_per_master)
        for _ in range(count):
            self._start_node(self._new_port())
        for port in list(self.ports):
            for _ in range(3):  # something may take a port found free: move to others
                try:
                    self._wait_answering(port)
                    break
                except PortTaken:
                    self._forget(port)
                    port = self._new_port()
                    self._start_node(port)
            else:
                self._wait_answering(port)
        addresses = [f"{HOST}:{port}" for port in self.ports]
        created = subprocess.run(
            [
                str(self._cli), "--cluster", "create", *addresses,
                "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes",
            ],
            capture_output=True, text=True, timeout=CREATE_TIMEOUT_S, check=False,
        )  # fmt: skip
        if created.returncode != 0 or f"All {SLOTS} slots covered" not in created.stdout:
            raise ClusterError(
                f"redis-cli --cluster create failed (exit {created.returncode}):\n"
                f"{created.stdout}{created.stderr}"
            )
        self.wait_settled("the new cluster")

    def _new_port(self) -> int:
        """A client port and a bus port of its own (not port + 10000: that may be taken,
        or past 65535)."""
        port = free_port()
        while port in self.ports:
            port = free_port()
        bus = free_port()
        while bus == port or bus in self._bus_ports.values():
            bus = free_port()
        self.ports.append(port)
        self._bus_ports[port] = bus
        return port

    def _start_node(self, port: int) -> None:
        """Start the node of ``port``; its config file makes a restarted node the same node."""
        process = subprocess.Popen(
            [
                str(self._server),
                "--port", str(port), "--bind", HOST,
                "--cluster-enabled", "yes", "--cluster-port", str(self._bus_ports[port]),
                "--cluster-config-file", str(self.folder / f"nodes-{port}.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica takes over however long it was cut off: it is the only copy.
                "--cluster-replica-validity-factor", "0",
                # A replica syncs at once, not after the default wait for more replicas.
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                "--appendonly", "no", "--save", "", "--dir", str(self.folder),
                "--logfile", str(self.folder / f"redis-{port}.log"), "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._processes[port] = process
        self._pids.add(process.pid)

    def _forget(self, port: int) -> None:
        """Drop a node that never started."""
        self.ports.remove(port)
        del self._bus_ports[port]
        del self._processes[port]

    def _wait_answering(self, port: int) -> None:
        """Until our process on ``port`` answers (INFO names its pid: not some other server
        that took the port)."""
        process = self._processes[port]
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(redis.RedisError):
                if ask(port, "INFO", "server")["process_id"] == process.pid:
                    return
            if process.poll() is not None or time.monotonic() > deadline:
                log = self.folder / f"redis-{port}.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                failure = PortTaken if "Address already in use" in tail else ClusterError
                raise failure(
                    f"redis-server on port {port} did not answer within {START_TIMEOUT_S:.0f} s "
                    f"(exit status {process.poll()}); its log ends:\n{tail}"
                )
            time.sleep(POLL_S)  # bounded polling of a process we just started

    def stop(self) -> None:
        """Kill every process and remove the folder; safe to call again."""
        for process in self._processes.values():
            if process.poll() is None:
                process.kill()
        for process in self._processes.values():
            process.wait(timeout=10)
        self._processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """This cluster's processes still running, found as ``pgrep -f redis-server`` would
        find them: a redis-server that is one of the processes started here, or that works
        in this cluster's folder (``--dir``; " (deleted)" once the folder is gone). Other
        clusters, of other tests or other test processes, are not this one's."""
        folder = str(self.folder)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                words = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().split()
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue  # gone meanwhile, or not ours to read
            if not words or not words[0].endswith("redis-server"):
                continue
            if int(entry.name) in self._pids or cwd in (folder, f"{folder} (deleted)"):
                found.append(f"pid {entry.name}: {' '.join(words)}")
        return found

    # --- failing over -------------------------------------------------------------------

    def fail_over(self, master: Node, *, hard: bool = False, restart: bool = True) -> Node:
        """Make ``master``'s replica the master of its slots; return the new master.

        Graceful: CLUSTER FAILOVER on the replica, which first catches up with the master,
        and the old master becomes its replica. Hard: kill -9 the master; the others call
        it failed after the node timeout and its replica is elected. With ``restart`` the
        killed node is started again from its config file and rejoins as a replica of the
        new master. Returns once every live node agrees on the new shape and is healthy.
        """
        replica = self.replica_of(master)
        if not hard:
            ask(replica.port, "CLUSTER", "FAILOVER")
            self.wait_settled(
                f"{replica.port} taking over from {master.port} (CLUSTER FAILOVER)",
                lambda views: self._follows(views, replica=master.port, master=replica.port),
            )
            return self._node(replica.port)
        self.kill(master)
        self.wait_settled(
            f"{replica.port} taking over from {master.port} (killed)",
            lambda views: self._promoted(views, replica.port),
        )
        if restart:
            self._start_node(master.port)
            self._wait_answering(master.port)
            self.wait_settled(
                f"{master.port} restarted as a replica of {replica.port}",
                lambda views: self._follows(views, replica=master.port, master=replica.port),
            )
        return self._node(replica.port)

    def kill(self, node: Node) -> None:
        """kill -9 a live node and reap it."""
        process = self._processes.pop(node.port)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def _node(self, port: int) -> Node:
        return next(node for node in self.nodes(port) if node.port == port)

    def _promoted(self, views: dict[int, list[Node]], port: int) -> str | None:
        for seen_by, view in views.items():
            node = next((n for n in view if n.port == port), None)
            if node is None or not (node.is_master and node.slots):
                return f"{seen_by} does not see {port} as a master with slots yet"
        return None

    def _follows(self, views: dict[int, list[Node]], replica: int, master: int) -> str | None:
        promoted = self._promoted(views, master)
        if promoted is not None:
            return promoted
        for seen_by, view in views.items():
            ids = {n.port: n.id for n in view}
            follower = next((n for n in view if n.port == replica), None)
            if follower is None or follower.master_id != ids.get(master):
                return f"{seen_by} does not see {replica} as a replica of {master} yet"
        return None

    # --- waiting ------------------------------------------------------------------------

    def wait_settled(
        self,
        what: str,
        condition: Callable[[dict[int, list[Node]]], str | None] = lambda views: None,
        timeout: float = SETTLE_TIMEOUT_S,
    ) -> None:
        """Poll until ``condition`` (given every live node's CLUSTER NODES) holds and the
        cluster is healthy (see :meth:`_unsettled`), for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                views = {port: self.nodes(port) for _, port in self.startup_nodes}
                why = condition(views) or self._unsettled(views)
            except redis.RedisError as exc:
                why = f"a node did not answer: {exc}"
            if why is None:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{what}: not within {timeout:g} s: {why}\n{self._snapshot()}")
            time.sleep(POLL_S)  # bounded polling of the cluster's own state

    def _unsettled(self, views: dict[int, list[Node]]) -> str | None:
        """Why the cluster is not yet healthy, or None: every live node says cluster_state
        ok with every slot served and every node known; all of them see the same roles; the
        masters with slots are live, as many as were created, and cover every slot; every
        other live node is a replica of one of them, linked and done syncing, and counted
        online by its master."""
        for port in views:
            info = self.info(port)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return f"{port} says cluster_state {info.get('cluster_state')}"
            if info.get("cluster_known_nodes") != str(len(self.ports)):
                return f"{port} knows {info.get('cluster_known_nodes')} nodes"
        shapes = {port: _shape(view, views) for port, view in views.items()}
        first_port, first = next(iter(shapes.items()))
        for port, shape in shapes.items():
            if shape != first:
                return f"{port} and {first_port} see different roles"
        owners = {port: slots for port, (role, _, slots) in first.items() if slots}
        if len(owners) != self.master_count or sum(owners.values()) != SLOTS:
            return f"slots are served by {owners}"
        for port, (role, master, _) in first.items():
            if port in owners:
                continue
            if role != "slave" or master not in owners:
                return f"{port} is a {role} of {master}"
            replication = ask(port, "INFO", "replication")
            if replication.get("master_link_status") != "up":
                return f"{port}'s link to its master {master} is not up"
            if replication.get("master_sync_in_progress") != 0:
                return f"{port} is still syncing from {master}"
        for port in owners:
            followers = sum(1 for _, followed, _ in first.values() if followed == port)
            replication = ask(port, "INFO", "replication")
            online = sum(
                1
                for name, value in replication.items()
                if name.startswith("slave") and isinstance(value, dict)
                if value.get("state") == "online"
            )
            if online != followers:
                return f"{port} has {online} replicas online of {followers}"
        return None

    def _snapshot(self) -> str:
        """The last CLUSTER INFO and CLUSTER NODES of every live node, for error messages."""
        parts = []
        for _, port in self.startup_nodes:
            try:
                info = ask(port, "CLUSTER", "INFO")
                nodes = ask(port, "CLUSTER", "NODES")
            except redis.RedisError as exc:
                parts.append(f"--- {port}: {exc}")
                continue
            parts.append(f"--- {port} CLUSTER INFO:\n{info.strip()}\n--- {port} CLUSTER NODES:\n"
                         f"{nodes.strip()}")  # fmt: skip
        return "\n".join(parts)


def _shape(
    view: list[Node], views: dict[int, list[Node]]
) -> dict[int, tuple[str, int | None, int]]:
    """What a view says of each live node: its role, the port it follows, its slot count."""
    ports = {node.id: node.port for node in view}
    return {
        node.port: (
            "master" if node.is_master else "slave",
            ports.get(node.master_id) if node.master_id else None,
            node.slots,
        )
        for node in view
        if node.port in views
    }


def start_cluster(folder: Path, masters: int = 3, replicas_per_master: int = 1) -> Cluster:
    """A healthy cluster of ``masters`` masters with ``replicas_per_master`` replicas each,
    keeping its files in ``folder``; nothing is left running if it does not come up."""
    cluster = Cluster(folder, masters, replicas_per_master)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def running_cluster(folder: Path) -> Iterator[Cluster]:
    """A cluster for the ``with`` block; afterwards every process of it is gone."""
    cluster = start_cluster(folder)
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.leftovers()
        if left:
            raise ClusterError("cluster processes still running: " + "; ".join(left))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster per test process; tests use keys of their own in it and fail nothing over."""
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_own(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own, to fail over or kill nodes in."""
    with running_cluster(tmp_path / "redis-cluster") as cluster:
        yield cluster
