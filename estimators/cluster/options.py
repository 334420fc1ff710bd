"""`--cluster ray[:ADDRESS]`, `--chunk-frames`, `--retries`: where a job runs and how it is split.

Addresses (`depth360 estimate --cluster ...`):

- `ray`: a Ray cluster started on this machine for the job and stopped after it (one
  chunk per GPU, or one at a time on the CPU): the default for trying it;
- `ray:HOST:PORT` (or `ray:auto`): the cluster whose head was started with
  `ray start --head --port PORT`; this process joins it as the job's driver;
- `ray://HOST:PORT` (or `ray:ray://HOST:PORT`): the same through the Ray Client server
  of the head (port 10001 by default), from a machine outside the cluster.

Ray is an optional extra of the engine: without it everything else works and a
`--cluster` job stops with how to install it (`ray_module`).
"""

from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass

from ..errors import BadInputError, BrokenEnvironmentError

RAY_PIN = "ray[client]==2.58.0"  # the engine's optional extra (requirements/engine.in)
DEFAULT_CHUNK_FRAMES = 100
DEFAULT_RETRIES = 3
LOCAL = "local"
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[^:/\s]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class ClusterOptions:
    """A cluster job: `address` (LOCAL, "auto", "HOST:PORT" or "ray://HOST:PORT"), the
    frames per chunk, and how many times a failed or killed chunk is tried again."""

    address: str = LOCAL
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        if int(self.chunk_frames) < 1:
            raise BadInputError(f"--chunk-frames {self.chunk_frames}: give at least 1 frame per chunk")
        if int(self.retries) < 0:
            raise BadInputError(f"--retries {self.retries}: give 0 or more")
        object.__setattr__(self, "chunk_frames", int(self.chunk_frames))
        object.__setattr__(self, "retries", int(self.retries))

    @property
    def local(self) -> bool:
        return self.address == LOCAL

    @property
    def client(self) -> bool:
        """True for a Ray Client address (`ray://HOST:PORT`)."""
        return self.address.startswith("ray://")

    def host_port(self) -> tuple[str, int] | None:
        """(host, port) of a HOST:PORT or ray://HOST:PORT address; None for local and auto."""
        text = self.address.removeprefix("ray://")
        match = _HOST_PORT.match(text)
        if match is None:
            return None
        return match.group("host").strip("[]"), int(match.group("port"))

    def describe(self) -> str:
        """How the job's cluster is named in messages."""
        return "a local Ray cluster" if self.local else f"the Ray cluster at {self.address}"

    def to_cli(self) -> str:
        """The `--cluster` value that parses back into this address."""
        if self.local:
            return "ray"
        return self.address if self.client else f"ray:{self.address}"


def parse_cluster(text: str) -> str:
    """The address of a `--cluster` value; BadInputError naming the accepted forms."""
    value = text.strip()
    forms = "ray, ray:HOST:PORT, ray:auto or ray://HOST:PORT"
    if value == "ray":
        return LOCAL
    if value.startswith("ray://"):
        address = value
    elif value.startswith("ray:"):
        address = value[len("ray:"):]
    else:
        raise BadInputError(f"--cluster {text!r}: the cluster engine is Ray; give {forms}")
    if address == "auto":
        return address
    if _HOST_PORT.match(address.removeprefix("ray://")) is None or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        raise BadInputError(f"--cluster {text!r}: not an address; give {forms}")
    return address


def ray_module():
    """The `ray` module; BrokenEnvironmentError saying how to install it when it is missing."""
    try:
        return importlib.import_module("ray")
    except ImportError as error:
        raise BrokenEnvironmentError(
            f"--cluster needs Ray, an optional extra of the engine that this Python lacks ({error}): "
            f"install it with `python -m pip install '{RAY_PIN}'` (the version pinned in "
            "requirements/main.lock) on this machine and on every node of the cluster"
        ) from None


def add_cluster_arguments(estimate: argparse.ArgumentParser) -> None:
    """`--cluster`, `--chunk-frames`, `--retries` of `depth360 estimate`."""
    group = estimate.add_argument_group("a shot across many machines (Ray)")
    group.add_argument("--cluster", metavar="ray[:ADDRESS]",
                       help="run the chunks of videos on a Ray cluster: ray (a local one for this job), "
                       "ray:HOST:PORT, ray:auto or ray://HOST:PORT")
    group.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES, metavar="N",
                       help=f"frames per chunk (default {DEFAULT_CHUNK_FRAMES})")
    group.add_argument("--retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                       help=f"times a failed or killed chunk is tried again (default {DEFAULT_RETRIES})")


def cluster_from_args(args: argparse.Namespace) -> ClusterOptions | None:
    """The cluster options of parsed `estimate` arguments; None without --cluster."""
    if getattr(args, "cluster", None) is None:
        for option, value, default in (("--chunk-frames", args.chunk_frames, DEFAULT_CHUNK_FRAMES),
                                       ("--retries", args.retries, DEFAULT_RETRIES)):
            if value != default:
                raise BadInputError(f"{option} applies to a --cluster job")
        return None
    return ClusterOptions(parse_cluster(args.cluster), args.chunk_frames, args.retries)
