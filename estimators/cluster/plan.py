"""The plan of a cluster job: each input's frame range, what is already complete, its chunks.

A chunk is a `--frames A-B` run of the one pipeline (pipeline.run): it computes its
stabiliser context frames (A - context .. A - 1) first and writes A..B only, so chunks
equal a whole run, bit for bit. Chunks whose frames are all complete are not run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourcePlan:
    """One input as the plan task found it on the cluster (plain data: it travels between nodes).

    `first`..`last`: the frames the job covers (a still: 1..1); `ranged`: the user gave
    --frames (the sidecar and preview video are then named `_A-B`); `complete`: frames
    already complete from an earlier run with equal options; `context_frames`: how many
    frames before a chunk its first frame depends on.
    """

    index: int
    path: str
    name: str
    still: bool
    first: int
    last: int
    ranged: bool
    complete: tuple[int, ...]
    folder: str
    context_frames: int
    save: tuple[str, ...] = ()
    plate: bool = False
    fps: float | None = None
    sidecar_exists: bool = False

    @property
    def total(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Chunk:
    """Frames `first`..`last` of input number `source` (a still: frames None)."""

    source: int
    first: int
    last: int
    still: bool = False

    @property
    def frames(self) -> tuple[int, int] | None:
        return None if self.still else (self.first, self.last)

    def label(self, name: str) -> str:
        return name if self.still else f"{name} frames {self.first}-{self.last}"


def split_range(first: int, last: int, chunk_frames: int) -> list[tuple[int, int]]:
    """first..last in consecutive ranges of at most `chunk_frames` frames."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    return [(start, min(start + chunk_frames - 1, last)) for start in range(first, last + 1, chunk_frames)]


def chunks_to_run(plan: SourcePlan, chunk_frames: int) -> tuple[list[Chunk], list[Chunk]]:
    """(every chunk of the input, those with a frame still to write)."""
    if plan.still:
        chunk = Chunk(plan.index, 1, 1, still=True)
        return [chunk], ([] if plan.complete else [chunk])
    done = set(plan.complete)
    chunks = [Chunk(plan.index, a, b) for a, b in split_range(plan.first, plan.last, chunk_frames)]
    return chunks, [c for c in chunks if any(n not in done for n in range(c.first, c.last + 1))]
