"""Real Redis deployments for tests: a 3-master cluster and a Sentinel set (never fakeredis)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.lifecycle import Started

from .ports import free_port
from .redis_server import RedisServer

SLOTS = 16384
SLOT_KEYS_MAX = 1_000_000
"""``CLUSTER GETKEYSINSLOT``'s count when moving a slot: all of its keys at once."""
SERVICE = "semcache-master"
CLUSTER_ARGS = (
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", "5000",
)  # fmt: skip


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _client(port: int, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def _unclaimed(port: int, first: int, last: int) -> list[tuple[int, int]]:
    """The ranges of slots first..last that no node serves yet (a node that loaded keys has
    claimed their slots at start)."""
    with _client(port) as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    taken = sorted((int(r[0]), int(r[1])) for r in slots)
    out, low = [], first
    for start, end in taken:
        if start > low and low <= last:
            out.append((low, min(start - 1, last)))
        low = max(low, end + 1)
    if low <= last:
        out.append((low, last))
    return out


def _each(client: redis.Redis, slots: range, command: str, *args: object) -> list[Any]:
    """``CLUSTER <command> <slot> <args...>`` for every slot, pipelined; the replies."""
    pipe: Any
    with client.pipeline(transaction=False) as pipe:
        for slot in slots:
            pipe.execute_command("CLUSTER", command, slot, *args)
        return list(pipe.execute())


def _node_id(node: RedisServer) -> str:
    with _client(node.port) as client:
        return str(client.execute_command("CLUSTER", "MYID").decode())


class RedisClusterSet(Started):
    """Masters with ``cluster-enabled yes``, slots split evenly (``CLUSTER ADDSLOTSRANGE``) and
    joined with ``CLUSTER MEET``; no replicas."""

    def __init__(
        self,
        binary: str,
        *,
        masters: int = 3,
        seed: Path | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        """``seed``: an RDB file (a standalone server's data) the first node loads; it then
        serves every slot until :meth:`spread` moves the others' shares to them, keys and all."""
        self.bus_ports = [free_port() for _ in range(masters)]
        self.seed = seed
        loads: tuple[str, ...] = ()
        if seed is not None:
            loads = ("--dir", str(seed.parent), "--dbfilename", seed.name)
        # The bus port defaults to port + 10000, out of range for a high free port.
        self.nodes = [
            RedisServer(
                binary,
                extra_args=(
                    *CLUSTER_ARGS,
                    "--cluster-port",
                    str(bus_port),
                    *(loads if i == 0 else ()),
                ),
                ready_timeout=ready_timeout,
            )
            for i, bus_port in enumerate(self.bus_ports)
        ]

    @property
    def url(self) -> str:
        """Any one node: the client learns the others from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisClusterSet:
        try:
            return self._start()
        except BaseException:
            self.close()  # no server outlives a failed start
            raise

    def _start(self) -> RedisClusterSet:
        for node in self.nodes:
            node.start()
        shares = self._shares()
        if self.seed is not None:  # the first node serves every slot; it claimed those with keys
            shares = [(0, SLOTS - 1)] + [(1, 0)] * (len(self.nodes) - 1)
        for node, (first, last) in zip(self.nodes, shares, strict=True):
            for low, high in _unclaimed(node.port, first, last):
                with _client(node.port) as client:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        with _client(self.nodes[0].port) as client:
            for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus_port)
        wait_until(self._ready, "cluster_state:ok on every node")
        return self

    def _shares(self) -> list[tuple[int, int]]:
        """The even split: each node's first and last slot."""
        count = len(self.nodes)
        return [(i * SLOTS // count, (i + 1) * SLOTS // count - 1) for i in range(count)]

    def spread(self, keep_slot: int) -> None:
        """A seeded cluster: every other node gets an even share of the slots, and their keys,
        moved as ``redis-cli --cluster reshard`` moves them (IMPORTING, MIGRATING, ``MIGRATE``,
        ``SETSLOT NODE``). The first node keeps the share holding ``keep_slot`` (a key too large
        to move, say a vector set of a million rows)."""
        shares = self._shares()
        kept = next(i for i, (first, last) in enumerate(shares) if first <= keep_slot <= last)
        shares.insert(0, shares.pop(kept))
        source = self.nodes[0]
        for target, (first, last) in zip(self.nodes[1:], shares[1:], strict=True):
            slots = range(first, last + 1)
            self._mark_moving(slots, source, target)
            self._move_keys(slots, source, target)
            self._give(slots, target)

    def _ready(self) -> bool:
        for node in self.nodes:
            with _client(node.port) as client:
                info = client.cluster("info")
            if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) != len(
                self.nodes
            ):
                return False
        return True

    def flush(self) -> None:
        for node in self.nodes:
            with _client(node.port) as client:
                client.flushall()

    def owner(self, slot: int) -> RedisServer:
        """The master serving ``slot``, as the first node sees it."""
        port = self._owner_seen_by(self.nodes[0], slot)
        return next(n for n in self.nodes if n.port == port)

    def begin_migration(self, slot: int, target: RedisServer) -> RedisServer:
        """Mark ``slot`` IMPORTING on ``target`` and MIGRATING on its owner (which then answers
        ``ASK`` for its absent keys); return the owner."""
        source = self.owner(slot)
        self._mark_moving(range(slot, slot + 1), source, target)
        return source

    def finish_migration(self, slot: int, target: RedisServer) -> None:
        """Give ``slot`` to ``target`` on every node (its old owner then answers ``MOVED``); the
        slot's keys must have moved already."""
        self._give(range(slot, slot + 1), target)

    def _mark_moving(self, slots: range, source: RedisServer, target: RedisServer) -> None:
        with _client(target.port, timeout=60) as client:
            _each(client, slots, "SETSLOT", "IMPORTING", _node_id(source))
        with _client(source.port, timeout=60) as client:
            _each(client, slots, "SETSLOT", "MIGRATING", _node_id(target))

    def _move_keys(self, slots: range, source: RedisServer, target: RedisServer) -> None:
        """Every key of ``slots`` from ``source`` to ``target`` (``MIGRATE``, a slot at a time,
        pipelined 256 slots at once)."""
        pipe: Any
        with _client(source.port, timeout=600) as client:
            for start in range(slots.start, slots.stop, 256):
                chunk = range(start, min(start + 256, slots.stop))
                found = _each(client, chunk, "GETKEYSINSLOT", SLOT_KEYS_MAX)
                with client.pipeline(transaction=False) as pipe:
                    for keys in found:
                        if keys:
                            pipe.execute_command(
                                "MIGRATE", "127.0.0.1", target.port, "", 0, 600_000,
                                "KEYS", *keys,
                            )  # fmt: skip
                    pipe.execute()

    def _give(self, slots: range, target: RedisServer) -> None:
        """``SETSLOT NODE`` on every node, the new owner first; then wait until all agree."""
        target_id = _node_id(target)
        for node in sorted(self.nodes, key=lambda n: n is not target):
            with _client(node.port, timeout=60) as client:
                _each(client, slots, "SETSLOT", "NODE", target_id)
        ends = (slots[0], slots[-1])
        wait_until(
            lambda: all(self._owner_seen_by(n, e) == target.port for n in self.nodes for e in ends),
            f"every node to agree on slots {slots[0]}-{slots[-1]}",
        )

    def _owner_seen_by(self, node: RedisServer, slot: int) -> int:
        with _client(node.port) as client:
            for first, last, (_, port, *_rest), *_ in client.execute_command("CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    return int(port)
        return 0

    def keys(self) -> dict[int, list[bytes]]:
        """Every key, by the port of the node holding it."""
        out: dict[int, list[bytes]] = {}
        for node in self.nodes:
            with _client(node.port) as client:
                out[node.port] = list(client.scan_iter(count=1000))
        return out

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class SentinelProcess:
    """``redis-server <conf> --sentinel`` on a free port, monitoring one master."""

    def __init__(self, binary: str, master_port: int) -> None:
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="semcache-sentinel-"))
        self._conf = self._dir / "sentinel.conf"
        self._conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {self._dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self._dir / "sentinel.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, str(self._conf), "--sentinel"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, f"sentinel on port {self.port}", timeout=10)

    def _answers(self) -> bool:
        try:
            with _client(self.port) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def master_port(self) -> int:
        with _client(self.port) as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


class SentinelSet(Started):
    """One master, one replica and three sentinels (quorum 2)."""

    def __init__(self, binary: str) -> None:
        self.master = RedisServer(binary)
        self.replica: RedisServer | None = None
        self.sentinels: list[SentinelProcess] = []
        self._binary = binary

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> SentinelSet:
        try:
            return self._start()
        except BaseException:
            self.close()  # no server outlives a failed start
            raise

    def _start(self) -> SentinelSet:
        self.master.start()
        self.replica = RedisServer(
            self._binary, extra_args=("--replicaof", "127.0.0.1", str(self.master.port))
        ).start()
        wait_until(self._replica_synced, "the replica's initial sync")
        self.sentinels = [SentinelProcess(self._binary, self.master.port) for _ in range(3)]
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._sentinels_see_replica, "sentinels to discover the replica")
        return self

    def _replica_synced(self) -> bool:
        assert self.replica is not None
        with _client(self.replica.port) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinels_see_replica(self) -> bool:
        for sentinel in self.sentinels:
            with _client(sentinel.port) as client:
                replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                others = client.execute_command("SENTINEL", "SENTINELS", SERVICE)
            if not replicas or len(others) < len(self.sentinels) - 1:
                return False
        return True

    def master_port(self) -> int:
        return self.sentinels[0].master_port()

    def failover(self) -> int:
        """Force a failover (``SENTINEL FAILOVER``); return the new master's port once every
        sentinel names it and it accepts writes."""
        before = self.master_port()
        with _client(self.sentinels[0].port) as client:
            client.execute_command("SENTINEL", "FAILOVER", SERVICE)

        def switched() -> bool:
            ports = {s.master_port() for s in self.sentinels}
            if len(ports) != 1 or before in ports:
                return False
            try:
                with _client(ports.pop()) as client:
                    return bool(client.info("replication").get("role") == "master")
            except redis.ConnectionError:
                return False  # being reconfigured: sentinels kill its client connections

        wait_until(switched, "the failover")
        after = self.master_port()
        wait_until(lambda: self._synced_to(after), "the old master to follow the new one")
        return after

    def _synced_to(self, master_port: int) -> bool:
        for server in (self.master, self.replica):
            assert server is not None
            if server.port == master_port:
                continue
            try:
                with _client(server.port) as client:
                    info = client.info("replication")
            except redis.ConnectionError:
                return False  # being reconfigured: sentinels kill its client connections
            if info.get("role") != "slave" or info.get("master_link_status") != "up":
                return False
        return True

    def flush(self) -> None:
        with _client(self.master_port()) as client:
            client.flushall()
            client.execute_command("WAIT", 1, 2000)

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        if self.replica is not None:
            self.replica.close()
        self.master.close()
