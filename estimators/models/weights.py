"""The weight store: where checkpoints live, how they are fetched, and how they are loaded.

Models folder: an explicit `models_dir`, else `$DEPTH360_MODELS`, else the per-user data
folder (platformdirs) `depth360/models`. A model's checkpoint is its official file,
unchanged, under its official name (or the same stem with `.safetensors`).

Loading never runs code from a file: `.pth`/`.pt` go through
`torch.load(weights_only=True)` and `.safetensors` through safetensors. The state dict
is unwrapped from the containers official files use (`{"model": ..., "optimizer": ...}`
in MiDaS DPT files, `{"state_dict": ...}`, a `module.` prefix), converted by
`networks.convert_official_state_dict` and loaded with `strict=True`; anything that
does not fit exactly is a `WeightsInvalidError` naming the file and the model.

Downloads go to `<file>.part` (resumed with an HTTP Range request when that exists),
are checked (the byte size and sha256 the spec pins, then the keys and shapes of the
model) and only then renamed to the final name, so a checkpoint in the folder is complete
or absent. A server that offers another size than the pinned one is refused before the
body is read, and a body that grows past it is cut off; neither leaves a file behind.
Loading (`load_network`) checks keys and shapes strictly but not the byte size: a file put
in the folder by hand, or the official weights saved again, loads when it fits the model.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import (
    BadInputError,
    BrokenEnvironmentError,
    DownloadError,
    WeightsInvalidError,
    WeightsMissingError,
)
from ..version import __version__
from . import networks
from .registry import ModelSpec

MODELS_DIR_ENV = "DEPTH360_MODELS"
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_EXAMPLES = 3  # keys quoted per kind of mismatch in a message


def resolve_models_dir(models_dir: str | os.PathLike | None = None) -> Path:
    """The models folder: `models_dir`, else $DEPTH360_MODELS, else the user data folder."""
    if models_dir:
        return Path(models_dir).expanduser()
    from_env = os.environ.get(MODELS_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    import platformdirs

    return platformdirs.user_data_path("depth360", appauthor=False) / "models"


def _require_checkpoint(spec: ModelSpec) -> str:
    if not spec.checkpoint:
        raise BadInputError(f"model {spec.name!r} has no network and needs no weights")
    return spec.checkpoint


def checkpoint_path(spec: ModelSpec, models_dir: str | os.PathLike | None = None) -> Path:
    """Where `spec`'s checkpoint is (or would be) in the models folder.

    The official file name, or the same stem with `.safetensors` if only that exists.
    """
    folder = resolve_models_dir(models_dir)
    official = folder / _require_checkpoint(spec)
    safetensors = official.with_suffix(".safetensors")
    if not official.exists() and safetensors.exists():
        return safetensors
    return official


def weights_present(spec: ModelSpec, models_dir: str | os.PathLike | None = None) -> bool:
    """True when `spec` has a checkpoint file in the models folder."""
    return bool(spec.checkpoint) and checkpoint_path(spec, models_dir).is_file()


def missing_weights_message(spec: ModelSpec, path: Path) -> str:
    """What to do when `spec`'s checkpoint is not at `path`: the command, and the manual way."""
    return (
        f"weights of model {spec.name!r} are missing: {path.name} is not in {path.parent}. "
        f"Run `depth360 models download {spec.name}`, or fetch {spec.url} by hand "
        f"and save it as {path}"
    )


def existing_checkpoint(spec: ModelSpec, models_dir: str | os.PathLike | None = None) -> Path:
    """The path of `spec`'s checkpoint; WeightsMissingError (exit 3) saying how to get it if absent."""
    path = checkpoint_path(spec, models_dir)
    if not path.is_file():
        raise WeightsMissingError(missing_weights_message(spec, path))
    return path


def _is_state_dict(obj) -> bool:
    import torch

    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap_state_dict(obj, path: Path) -> dict:
    for _ in range(3):
        if _is_state_dict(obj):
            break
        inner = None
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            what = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else type(obj).__name__
            raise WeightsInvalidError(f"{path} holds no state dict of tensors (it holds {what})")
        obj = inner
    else:
        raise WeightsInvalidError(f"{path} holds no state dict of tensors")
    if all(key.startswith("module.") for key in obj):
        obj = {key[len("module.") :]: value for key, value in obj.items()}
    return obj


def _torch_load(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines()]
        unsafe = next((line for line in lines if "Unsupported global" in line), None)
        if unsafe is None:
            detail = next((line for line in lines if "Unsupported" in line), lines[0] if lines else "")
            raise WeightsInvalidError(
                f"cannot read checkpoint {path}: it is not a PyTorch checkpoint, or it is "
                f"truncated or corrupt ({detail}); delete it and download it again"
            ) from None
        name = unsafe.split(" was not", 1)[0].removeprefix("WeightsUnpickler error: ")
        raise WeightsInvalidError(
            f"refused to load {path}: it holds Python code or objects that a weights-only load "
            f"does not allow ({name}); it was not run. An official checkpoint holds only "
            f"tensors, so this file is not one (or it was altered)"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsInvalidError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({first_line}); "
            f"delete it and download it again"
        ) from None


def _safetensors_load(path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsInvalidError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({error}); "
            f"delete it and download it again"
        ) from None


def read_state_dict(path: str | os.PathLike, expected_size: int | None = None) -> dict:
    """The state dict (official keys, CPU tensors) of the checkpoint at `path`.

    Never runs code held in the file. WeightsMissingError if absent; WeightsInvalidError
    if truncated, corrupt, unsafe, or holding no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise WeightsInvalidError(
            f"checkpoint {path} is {size} bytes, expected {expected_size}: it is truncated or "
            f"not the official file; delete it and download it again"
        )
    raw = _safetensors_load(path) if path.suffix == ".safetensors" else _torch_load(path)
    return _unwrap_state_dict(raw, path)


def _network_options(spec: ModelSpec) -> dict:
    return {} if spec.max_depth is None else {"max_depth": spec.max_depth}


def build_network(spec: ModelSpec):
    """A fresh network for `spec` (random weights, eval mode, CPU)."""
    if not spec.architecture:
        raise BadInputError(f"model {spec.name!r} has no network")
    return networks.build(spec.architecture, **_network_options(spec))


def _examples(keys) -> str:
    keys = list(keys)
    more = ", ..." if len(keys) > _EXAMPLES else ""
    return ", ".join(keys[:_EXAMPLES]) + more


def state_dict_mismatch(expected: dict, state_dict: dict) -> str | None:
    """How `state_dict` differs from `expected` (name -> tensor or shape); None if it fits."""
    expected_shapes = {key: tuple(getattr(value, "shape", value)) for key, value in expected.items()}
    missing = [key for key in expected_shapes if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected_shapes]
    reshaped = [
        f"{key} is {list(state_dict[key].shape)} in the file, {list(shape)} in the model"
        for key, shape in expected_shapes.items()
        if key in state_dict and tuple(state_dict[key].shape) != shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {len(expected_shapes)} keys are missing ({_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} keys are unexpected ({_examples(unexpected)})")
    if reshaped:
        parts.append(f"{len(reshaped)} tensors have another shape ({_examples(reshaped)})")
    return "; ".join(parts) or None


def _convert(spec: ModelSpec, state_dict: dict, path: Path) -> dict:
    try:
        return networks.convert_official_state_dict(spec.architecture, state_dict)
    except (KeyError, ValueError, RuntimeError, IndexError) as error:
        raise WeightsInvalidError(
            f"{path} does not match model {spec.name!r}: its keys cannot be converted "
            f"({type(error).__name__}: {error}); is it the checkpoint of another model?"
        ) from None


def _check_matches(spec: ModelSpec, expected: dict, converted: dict, path: Path) -> None:
    mismatch = state_dict_mismatch(expected, converted)
    if mismatch:
        raise WeightsInvalidError(
            f"{path} does not match model {spec.name!r}: {mismatch}. "
            f"Is it the checkpoint of another model? {spec.name} expects the official "
            f"{spec.checkpoint} from {spec.url}"
        )


def load_network(spec: ModelSpec, models_dir: str | os.PathLike | None = None):
    """`spec`'s network on the CPU, in eval mode, with its official weights loaded strictly.

    WeightsMissingError (exit 3) names the file, the folder and where to get it;
    WeightsInvalidError (exit 2) names the file and what does not fit.
    """
    path = existing_checkpoint(spec, models_dir)
    converted = _convert(spec, read_state_dict(path), path)
    network = build_network(spec)
    _check_matches(spec, network.state_dict(), converted, path)
    try:
        network.load_state_dict(converted, strict=True)
    except RuntimeError as error:
        raise WeightsInvalidError(f"{path} does not match model {spec.name!r}: {error}") from None
    return network.eval()


def _expected_state(spec: ModelSpec) -> dict:
    """Names and shapes of `spec`'s network.

    Built on the CPU: a build on the "meta" device would allocate nothing, but its
    random initialisation pulls in torch's compiler stack, which costs far more time.
    """
    return {key: tuple(value.shape) for key, value in build_network(spec).state_dict().items()}


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _wrong_size(path: Path, size: int, expected: int) -> str:
    return (
        f"checkpoint {path} is {size} bytes, expected {expected}: it is truncated or "
        f"not the official file; delete it and download it again"
    )


def verify_checkpoint(spec: ModelSpec, path: str | os.PathLike) -> None:
    """Raise unless `path` is `spec`'s official checkpoint.

    The byte size and sha256 the spec pins are checked first, before the file is parsed;
    then it must load and its keys and shapes must fit the model. WeightsInvalidError for
    a file that is not the official one; BrokenEnvironmentError (exit 1) when the model's
    network cannot be built because a module fails to import.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if spec.size_bytes is not None and size != spec.size_bytes:
        raise WeightsInvalidError(_wrong_size(path, size, spec.size_bytes))
    if spec.sha256:
        actual = sha256_of(path)
        if actual.lower() != spec.sha256.lower():
            raise WeightsInvalidError(
                f"checkpoint {path} has sha256 {actual}, expected {spec.sha256}: it is not the official file"
            )
    state_dict = read_state_dict(path)
    try:
        expected = _expected_state(spec)
    except ImportError as error:
        missing = error.name or str(error)
        raise BrokenEnvironmentError(
            f"cannot check {path} against model {spec.name!r}: building its network failed "
            f"to import {missing!r} ({error}). The engine's Python environment is incomplete "
            f"or broken; reinstall its requirements"
        ) from error
    _check_matches(spec, expected, _convert(spec, state_dict, path), path)


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return str(reason) or type(reason).__name__


def _refuse_size(spec: ModelSpec, url: str, part: Path, size: int, at_least: bool = False) -> None:
    """The server's file has another size than the pinned one: keep nothing, say so."""
    part.unlink(missing_ok=True)
    more = "at least " if at_least else ""
    raise DownloadError(
        f"refused the download of {spec.name} from {url}: the file is {more}{size} bytes, "
        f"expected {spec.size_bytes} (the official {spec.checkpoint}); nothing was kept"
    )


def _fetch(spec: ModelSpec, url: str, part: Path, progress: bool, timeout: float) -> None:
    """Download `url` into `part`, resuming from the bytes already there."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    if spec.size_bytes is not None and offset >= spec.size_bytes:
        if offset == spec.size_bytes:
            return
        part.unlink()
        offset = 0
    headers = {"User-Agent": f"depth360/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # nothing after `offset`: the part is complete, verification decides
        raise DownloadError(f"cannot download {spec.name} from {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise DownloadError(
            f"cannot download {spec.name} from {url}: {_reason(error)}. Check the network "
            f"connection (or fetch the file by hand and put it in {part.parent})"
        ) from None
    with response:
        resumed = offset and response.status == 206 and response.headers.get(
            "Content-Range", ""
        ).startswith(f"bytes {offset}-")
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else spec.size_bytes
        if spec.size_bytes is not None and total != spec.size_bytes:
            _refuse_size(spec, url, part, total)
        received = offset
        try:
            with (
                open(part, "ab" if resumed else "wb") as out,
                tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=part.name.removesuffix(".part"), file=sys.stderr, disable=not progress,
                ) as bar,
            ):
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if spec.size_bytes is not None and received > spec.size_bytes:
                        break
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(
                f"download of {spec.name} from {url} stopped after {received} bytes "
                f"({_reason(error)}); run the same command again to resume"
            ) from None
    if spec.size_bytes is not None and received > spec.size_bytes:
        _refuse_size(spec, url, part, received, at_least=True)
    if total is not None and received < total:
        raise DownloadError(
            f"download of {spec.name} from {url} stopped after {received} of {total} bytes; "
            f"run the same command again to resume"
        )


def download(
    spec: ModelSpec,
    models_dir: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Fetch `spec`'s official checkpoint into the models folder; return its path.

    `url` replaces the spec's (a mirror), and is held to the same pins. An existing
    checkpoint is kept as it is. Resumes an earlier `<file>.part`; refuses a file of another
    size than the pinned one, keeping nothing; checks size, sha256, keys and shapes before
    the atomic rename. DownloadError (exit 1) for network failures and failed checks;
    BrokenEnvironmentError (exit 1, the part kept) when the network cannot be built.
    """
    checkpoint = _require_checkpoint(spec)
    url = url or spec.url
    if not url:
        raise BadInputError(f"model {spec.name!r} has no download address")
    folder = resolve_models_dir(models_dir)
    target = folder / checkpoint
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create the models folder {folder}: {error.strerror}") from None
    part = target.with_name(target.name + ".part")
    _fetch(spec, url, part, progress, timeout)
    try:
        verify_checkpoint(spec, part)
    except (WeightsInvalidError, WeightsMissingError) as error:
        part.unlink(missing_ok=True)
        raise DownloadError(f"the file downloaded from {url} was deleted: {error}") from None
    os.replace(part, target)
    return target
