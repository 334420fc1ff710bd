"""The reference-model fixtures of ../shared/reference-models, and their deterministic weights.

`fixture_state_dict(name)` rebuilds the state dict that produced the official outputs,
under the official key names, by the rule in the fixtures' README. Entries of kind
`computed_buffer` are left out: the project's network must compute those itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np


def _reference_dir() -> Path:
    """../shared/reference-models beside the repository; for a local clone elsewhere (CI's
    `git clone . /tmp/x`), beside the repository it was cloned from; DEPTH360_REFERENCE_MODELS
    overrides both."""
    if os.environ.get("DEPTH360_REFERENCE_MODELS"):
        return Path(os.environ["DEPTH360_REFERENCE_MODELS"])
    repo = Path(__file__).resolve().parents[1]
    beside = repo.parent / "shared" / "reference-models"
    if beside.is_dir():
        return beside
    origin = subprocess.run(["git", "-C", str(repo), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True).stdout.strip()
    if origin and "://" not in origin and Path(origin).is_dir():
        cloned_from = Path(origin).resolve().parent / "shared" / "reference-models"
        if cloned_from.is_dir():
            return cloned_from
    return beside  # missing: the tests that read it fail naming this path


REFERENCE_DIR = _reference_dir()
# Relative tolerance of the fixtures' README: max|out - expected| <= 1e-3 * max|expected|.
RELATIVE_TOLERANCE = 1e-3


@functools.lru_cache(maxsize=1)
def index() -> dict:
    """The fixtures' index.json: model name -> family, official file, cases."""
    return json.loads((REFERENCE_DIR / "index.json").read_text())


def manifest(name: str) -> list[tuple[str, tuple[int, ...], str, str]]:
    """The official state-dict entries of `name`, in order: (key, shape, dtype, kind)."""
    rows = json.loads((REFERENCE_DIR / f"{name}.manifest.json").read_text())
    return [(key, tuple(shape), dtype, kind) for key, shape, dtype, kind in rows]


def fixture_value(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The README's deterministic value of one state-dict entry."""
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    z = np.random.default_rng(seed).standard_normal(size=shape).astype(np.float32)
    if key.endswith("running_var"):
        return (1 + 0.1 * np.abs(z)).astype(np.float32)
    if key.endswith("running_mean"):
        return (0.1 * z).astype(np.float32)
    if len(shape) >= 2:
        return (z / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    if len(shape) == 1 and (key.endswith("weight") or key.endswith("gamma")):
        return (1 + 0.1 * z).astype(np.float32)
    return (0.1 * z).astype(np.float32)


def fixture_state_dict(name: str) -> dict:
    """Official-key state dict (torch tensors) of fixture model `name`, computed buffers left out."""
    import torch

    return {
        key: torch.from_numpy(fixture_value(key, shape))
        for key, shape, _dtype, kind in manifest(name)
        if kind in ("parameter", "batchnorm_statistic")
    }


def computed_buffer_keys(name: str) -> list[str]:
    """Keys the architecture computes itself (relative-position indices and the like)."""
    return [key for key, _shape, _dtype, kind in manifest(name) if kind == "computed_buffer"]


def cases(name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, input NCHW float32, expected output) for each case of fixture model `name`."""
    data = np.load(REFERENCE_DIR / f"{name}.npz")
    return [
        (case["label"], data[case["input"]], data[case["expected"]])
        for case in index()[name]["cases"]
    ]


def assert_matches_reference(out: np.ndarray, expected: np.ndarray) -> float:
    """Assert the README's tolerance; return max|out - expected| / max|expected|."""
    out = np.asarray(out, dtype=np.float32).reshape(expected.shape)
    scale = float(np.max(np.abs(expected)))
    error = float(np.max(np.abs(out - expected))) / scale
    assert error <= RELATIVE_TOLERANCE, f"max relative error {error:.3g} > {RELATIVE_TOLERANCE}"
    return error


def fixture_network(name: str, architecture: str, **options):
    """The project's network of `architecture` with fixture `name`'s weights, through the real
    conversion and a strict load (eval mode)."""
    from depth360.estimators.models import networks

    network = networks.build(architecture, **options)
    state_dict = networks.convert_official_state_dict(architecture, fixture_state_dict(name))
    network.load_state_dict(state_dict, strict=True)
    return network


def official_checkpoint_state(name: str) -> dict:
    """The state dict an official file of fixture model `name` holds: the rule's values plus the
    computed buffers the official file stores (Video Depth Anything's temporal sine tables,
    made by the official formula); for files that store no computed buffer, `fixture_state_dict`."""
    import math

    import torch

    state = fixture_state_dict(name)
    for key, shape, _dtype, kind in manifest(name):
        if kind != "computed_buffer":
            continue
        if not key.endswith(".pos_encoder.pe"):
            raise ValueError(f"no official value known for the computed buffer {key}")
        length, channels = shape[1], shape[2]
        position = torch.arange(length).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, channels, 2) * (-math.log(10000.0) / channels))
        table = torch.zeros(1, length, channels)
        table[0, :, 0::2] = torch.sin(position * div_term)
        table[0, :, 1::2] = torch.cos(position * div_term)
        state[key] = table
    return state


def write_official_checkpoint(name: str, folder: Path) -> Path:
    """Save fixture model `name` as its official file (`torch.save` of the official state dict) in `folder`."""
    import torch

    path = Path(folder) / index()[name]["official_file"]
    torch.save(official_checkpoint_state(name), path)
    return path
