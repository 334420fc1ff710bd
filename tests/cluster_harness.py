"""A Ray cluster of separate processes on 127.0.0.1 for the tests and the cluster benchmark.

Every process of it (the head, the worker nodes, the drivers the tests start) runs in a
network namespace of its own that holds only the loopback interface: Ray's nodes
listen and talk on 127.0.0.1, nothing can leave the machine, and the ports cannot meet
another user's. Nodes are small (one CPU, a 100 MB object store, no dashboard). Each
node is a `ray start --block` in a session of its own, so that killing its process
group kills the node: its raylet and every worker process it started.

    with LocalCluster(tmp) as cluster:        # the head (no CPU: it schedules only)
        cluster.add_workers("worker-a")       # a node with one CPU
        subprocess.run(cluster.command([depth360, "estimate", ..., "--cluster", cluster.address]))
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
PORT = 6379
OBJECT_STORE_BYTES = 100 * 2**20
START_TIMEOUT_S = 90.0
# No usage reports; Ray's workers at normal priority (Ray's default, niceness 15, puts the chunks
# behind everything else on a shared machine).
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "PYTHONWARNINGS": "ignore",
       "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "RAY_worker_niceness": "0"}
# The head declares a node dead ~2 s after it stops answering (Ray's default is ~15 s).
FAST_FAILURE_DETECTION = '{"health_check_period_ms": 500, "health_check_failure_threshold": 4}'


def can_make_namespaces() -> str | None:
    """None where this machine can run the harness, else why not."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "needs unshare and nsenter (util-linux)"
    if not RAY.is_file():
        return "needs Ray (the engine's optional extra)"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make network and mount namespaces here: {probe.stderr.strip()}"
    return None


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    log: Path

    def pids(self) -> list[int]:
        """Every live process of this node: `ray start`'s process group and every descendant
        (Ray's worker processes run in groups of their own, as children of the raylet)."""
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[int(entry)] = int(fields[1])
                if int(fields[2]) == self.process.pid:
                    parents[int(entry)] = self.process.pid  # in the group: count it as a child
        found, grew = {self.process.pid}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in found and pid not in found}
            found |= more
            grew = bool(more)
        return sorted(pid for pid in found if pid in parents)

    def kill(self) -> None:
        """SIGKILL every process of the node at once."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


class LocalCluster:
    """A head node (no CPU) and worker nodes, each its own process tree, on 127.0.0.1 (module docstring)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Ray's socket paths must stay short: its sessions live in a short folder of /tmp.
        self.temp = Path(tempfile.mkdtemp(prefix="d360ray", dir="/tmp"))
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"], start_new_session=True)
        self.nodes: dict[str, Node] = {}
        self.address = f"ray:127.0.0.1:{PORT}"
        time.sleep(0.05)
        subprocess.run(self.command(["ip", "link", "set", "lo", "up"]), check=True)
        self.killed: set[str] = set()
        self.head = self._launch("head", ["--head", f"--port={PORT}", "--num-cpus=0", "--include-dashboard=false",
                                          f"--temp-dir={self.temp}", f"--system-config={FAST_FAILURE_DETECTION}"])
        self._wait_started([self.head])

    def command(self, args: list[str], *, readonly: Path | None = None) -> list[str]:
        """`args` run inside the cluster's network namespace (and with `readonly` mounted read-only)."""
        inside = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--"]
        if readonly is None:
            return [*inside, *args]
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        return [*inside, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                str(readonly), *args]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **ENV}

    def _launch(self, name: str, options: list[str], readonly: Path | None = None) -> Node:
        log = self.folder / f"{name}.log"
        args = [str(RAY), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
                f"--object-store-memory={OBJECT_STORE_BYTES}", f"--node-name={name}", *options]
        with log.open("w") as handle:
            process = subprocess.Popen(self.command(args, readonly=readonly), stdout=handle, stderr=subprocess.STDOUT,
                                       env=self.environment(), start_new_session=True)
        node = self.nodes[name] = Node(name, process, log)
        return node

    def _wait_started(self, nodes: list[Node]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = list(nodes)
        while waiting and time.monotonic() < deadline:
            for node in list(waiting):
                if node.process.poll() is not None:
                    raise RuntimeError(f"ray node {node.name} exited: " + self._logs())
                if "Ray runtime started" in node.log.read_text():
                    waiting.remove(node)
            time.sleep(0.2)
        if waiting:
            raise RuntimeError(f"ray node(s) {[n.name for n in waiting]} did not start: " + self._logs())

    def add_workers(self, *names: str, readonly: Path | None = None, gpus: int = 0) -> list[Node]:
        """Worker nodes with one CPU each (and `gpus` declared GPUs);
        `readonly`: a folder these nodes see read-only."""
        options = [f"--address=127.0.0.1:{PORT}", "--num-cpus=1", *([f"--num-gpus={gpus}"] if gpus else [])]
        nodes = []
        for name in names:  # one after another: raylets starting together on one address can fail to register
            nodes.append(self._launch(name, options, readonly=readonly))
            self._wait_started(nodes[-1:])
        return nodes

    def alive_nodes(self) -> list[str]:
        """Names of the nodes the head counts as alive."""
        script = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='error'); "
                  "print('\\n'.join(n['NodeName'] for n in ray.nodes() if n['Alive']))")
        result = subprocess.run(self.command([sys.executable, "-c", script, f"127.0.0.1:{PORT}"]),
                                capture_output=True, text=True, env=self.environment(), timeout=60)
        return result.stdout.split() if result.returncode == 0 else []

    def kill(self, name: str) -> None:
        """SIGKILL every process of node `name`, then wait until the head counts it dead."""
        self.killed.add(name)
        self.nodes[name].kill()
        deadline = time.monotonic() + START_TIMEOUT_S
        while name in self.alive_nodes():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the head still counts {name} alive")
            time.sleep(0.5)

    def _logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text()[-2000:]}" for n in self.nodes.values())

    def close(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.kill()  # the head last
        try:
            os.killpg(self.holder.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.holder.wait()
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
