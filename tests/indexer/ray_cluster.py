"""A real two-node Ray cluster on this machine, for the tests of ``--engine ray``.

``ray start --head`` and a second ``ray start --address ...`` joining it, each in its own
process session with ports of its own and a private temporary folder, so that nothing else
running Ray on the machine is touched. Stopped by signalling exactly those sessions (never
``ray stop``, which stops every Ray on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: every socket is held open until all are bound, since one
    closed at once may be handed out again by the next bind (Ray refuses two components on one
    port)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


NODE_PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
                   "--runtime-env-agent-port", "--dashboard-agent-listen-port",
                   "--dashboard-agent-grpc-port")


def _node_ports(ports: list[int]) -> list[str]:
    return [part for flag, port in zip(NODE_PORT_FLAGS, ports, strict=True)
            for part in (flag, str(port))]


@dataclass
class RayCluster:
    address: str
    temp_dir: Path
    processes: list[subprocess.Popen]

    def pids(self, title: str) -> list[int]:
        """Processes of this cluster whose title (``ray::...``) contains ``title``."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith("ray::") and title in cmdline and self._ours(int(entry.name)):
                found.append(int(entry.name))
        return found

    def _ours(self, pid: int) -> bool:
        """A process in one of the sessions this cluster's ``ray start`` commands lead."""
        try:
            return os.getsid(pid) in {p.pid for p in self.processes}
        except OSError:
            return False


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"ray start --head exited:\n{log.read_text()[-2000:]}") \
                    from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not listen in {timeout} s") from None
            time.sleep(0.2)


@contextmanager
def two_node_cluster(cpus_per_node: int = 1, timeout: float = 60) -> Iterator[RayCluster]:
    """A head and a worker node on loopback, ``cpus_per_node`` logical CPUs each."""
    temp_dir = Path(tempfile.mkdtemp(prefix="avs-ray-", dir="/tmp"))  # short: socket paths
    # Token authentication off: a token file left in ~/.ray by another Ray must not matter;
    # the driver (the test) sets the same (see `ray_cluster` in test_index_ray.py).
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus_per_node),
              "--num-gpus", "0", "--object-store-memory", str(150 * 2**20),
              "--disable-usage-stats"]
    # The head's port, its dashboard's, then each node's own: all distinct.
    ports = free_ports(2 + 2 * len(NODE_PORT_FLAGS))
    port, dashboard_port = ports[:2]
    head_ports, worker_ports = ports[2:2 + len(NODE_PORT_FLAGS)], ports[2 + len(NODE_PORT_FLAGS):]
    processes: list[subprocess.Popen] = []
    try:
        head_log = temp_dir / "head.log"
        processes.append(subprocess.Popen(
            [str(RAY), "start", "--head", "--port", str(port), "--temp-dir", str(temp_dir),
             "--include-dashboard", "false", "--dashboard-port", str(dashboard_port),
             *common, *_node_ports(head_ports)],
            stdout=head_log.open("w"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True))
        _wait_for_port(port, processes[0], head_log, timeout)
        address = f"127.0.0.1:{port}"
        worker_log = temp_dir / "worker.log"
        processes.append(subprocess.Popen(
            [str(RAY), "start", "--address", address, *common, *_node_ports(worker_ports)],
            stdout=worker_log.open("w"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True))
        cluster = RayCluster(address, temp_dir, processes)
        _wait_for_nodes(cluster, 2, timeout)
        yield cluster
    finally:
        _stop(processes, temp_dir)


def _wait_for_nodes(cluster: RayCluster, count: int, timeout: float) -> None:
    """Until ``count`` raylets of this cluster run (each node has one)."""
    deadline = time.monotonic() + timeout
    while True:
        raylets = [pid for pid in _session_pids(cluster.processes)
                   if _comm(pid) == "raylet"]
        if len(raylets) >= count:
            time.sleep(1.0)  # registration with the head follows the start
            return
        for process in cluster.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a ray start exited:\n"
                                   f"{(cluster.temp_dir / 'worker.log').read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(raylets)} of {count} Ray nodes started in {timeout} s")
        time.sleep(0.2)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _session_pids(processes: list[subprocess.Popen]) -> list[int]:
    sessions = {p.pid for p in processes}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) in sessions:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _stop(processes: list[subprocess.Popen], temp_dir: Path) -> None:
    """SIGTERM to the sessions we started, SIGKILL to what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        for process in processes:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while _session_pids(processes) and time.monotonic() < deadline:
            for process in processes:
                process.poll()  # reap the leaders
            time.sleep(0.1)
        if not _session_pids(processes):
            break
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            pass
    for pid in _mentioning(str(temp_dir)):  # a process of ours that left the sessions
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)


def _mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
