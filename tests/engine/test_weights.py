"""The weight store: safe checkpoint reading, strict loading, and resumable verified downloads.

Downloads are served by a local HTTP server on 127.0.0.1 (with Range support); nothing
goes beyond loopback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import socket
from pathlib import Path

import pytest
import torch

from depth360.estimators.errors import (
    BrokenEnvironmentError,
    DownloadError,
    WeightsInvalidError,
    WeightsMissingError,
)
from depth360.estimators.models import registry, weights
from tests.loopback_server import LoopbackFileServer
from tests.reference_fixtures import fixture_state_dict

SMALL = registry.get("depth-anything-v2-small")


@pytest.fixture(scope="module")
def vits_bytes(tmp_path_factory) -> bytes:
    """The Depth Anything V2 Small fixture weights, saved as the official file is."""
    path = tmp_path_factory.mktemp("vits") / SMALL.checkpoint
    torch.save(fixture_state_dict("depth_anything_v2_vits"), path)
    return path.read_bytes()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- models folder -------------------------------------------------------------------------


def test_models_folder_order(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.MODELS_DIR_ENV, str(tmp_path / "env"))
    assert weights.resolve_models_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert weights.resolve_models_dir() == tmp_path / "env"
    monkeypatch.delenv(weights.MODELS_DIR_ENV)
    assert weights.resolve_models_dir().parts[-2:] == ("depth360", "models")


def test_presence_and_safetensors_name(tmp_path):
    assert not weights.weights_present(SMALL, tmp_path)
    assert weights.checkpoint_path(SMALL, tmp_path) == tmp_path / "depth_anything_v2_vits.pth"
    (tmp_path / "depth_anything_v2_vits.safetensors").write_bytes(b"x")
    assert weights.weights_present(SMALL, tmp_path)
    assert weights.checkpoint_path(SMALL, tmp_path).name == "depth_anything_v2_vits.safetensors"


# --- reading checkpoints -------------------------------------------------------------------


def _tiny() -> dict:
    return {"pretrained.a": torch.arange(6.0).reshape(2, 3), "depth_head.b": torch.ones(4)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"model": sd, "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}, "epoch": 7},
        lambda sd: {"state_dict": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["plain", "midas-model-optimizer", "state_dict", "module-prefix"],
)
def test_reads_the_wrappers_official_files_use(tmp_path, wrap):
    torch.save(wrap(_tiny()), tmp_path / "c.pt")
    state_dict = weights.read_state_dict(tmp_path / "c.pt")
    assert sorted(state_dict) == sorted(_tiny())
    torch.testing.assert_close(state_dict["pretrained.a"], _tiny()["pretrained.a"])


def test_reads_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file(_tiny(), tmp_path / "c.safetensors")
    assert sorted(weights.read_state_dict(tmp_path / "c.safetensors")) == sorted(_tiny())
    (tmp_path / "t.safetensors").write_bytes((tmp_path / "c.safetensors").read_bytes()[:-9])
    with pytest.raises(WeightsInvalidError, match="t.safetensors.*truncated or corrupt"):
        weights.read_state_dict(tmp_path / "t.safetensors")


@pytest.mark.parametrize("cut", [0, 10, 0.5, -5])
def test_truncated_checkpoint_is_refused(tmp_path, cut):
    torch.save(_tiny(), tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    size = int(len(data) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(data) + cut)
    (tmp_path / "t.pt").write_bytes(data[:size])
    with pytest.raises(WeightsInvalidError, match="t.pt.*truncated or corrupt"):
        weights.read_state_dict(tmp_path / "t.pt")


def test_expected_size_is_checked(tmp_path):
    torch.save(_tiny(), tmp_path / "c.pt")
    with pytest.raises(WeightsInvalidError, match="bytes, expected 12345"):
        weights.read_state_dict(tmp_path / "c.pt", expected_size=12345)


class _Marker:
    """Unpickling this creates a file: proof that code in a checkpoint ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_holding_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"pretrained.a": torch.ones(2), "payload": _Marker(marker)}, tmp_path / "evil.pt")
    (tmp_path / "evil-raw.pt").write_bytes(pickle.dumps(_Marker(marker), protocol=2))
    for name in ("evil.pt", "evil-raw.pt"):
        with pytest.raises(WeightsInvalidError, match=f"refused to load .*{name}.*GLOBAL io.open.*not run"):
            weights.read_state_dict(tmp_path / name)
    (tmp_path / "evil-4.pt").write_bytes(pickle.dumps(_Marker(marker), protocol=4))
    with pytest.raises(WeightsInvalidError, match="evil-4.pt: it is not a PyTorch checkpoint"):
        weights.read_state_dict(tmp_path / "evil-4.pt")
    assert not marker.exists()


def test_file_without_state_dict_is_refused(tmp_path):
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "c.pt")
    with pytest.raises(WeightsInvalidError, match="holds no state dict"):
        weights.read_state_dict(tmp_path / "c.pt")


def test_mismatch_report_counts_missing_unexpected_and_shapes():
    expected = {"a": (2, 3), "b": (4,), "c": (1,)}
    report = weights.state_dict_mismatch(expected, {"a": torch.zeros(3, 2), "b": torch.zeros(4), "z": torch.zeros(1)})
    assert "1 of the model's 3 keys are missing (c)" in report
    assert "1 keys are unexpected (z)" in report
    assert "a is [3, 2] in the file, [2, 3] in the model" in report
    assert weights.state_dict_mismatch(expected, {k: torch.zeros(s) for k, s in expected.items()}) is None


def test_missing_weights_message_names_file_folder_url_and_command(tmp_path):
    with pytest.raises(WeightsMissingError) as caught:
        weights.load_network(SMALL, tmp_path)
    message = str(caught.value)
    for part in (SMALL.checkpoint, str(tmp_path), SMALL.url, "depth360 models download depth-anything-v2-small"):
        assert part in message
    assert caught.value.exit_status == 3


@pytest.mark.slow
def test_loads_official_weights_strictly_and_refuses_another_models(tmp_path, vits_bytes):
    (tmp_path / SMALL.checkpoint).write_bytes(vits_bytes)
    network = weights.load_network(SMALL, tmp_path)
    expected = fixture_state_dict("depth_anything_v2_vits")
    key = "depth_head.scratch.output_conv2.2.weight"
    torch.testing.assert_close(network.state_dict()[key], expected[key], rtol=0, atol=0)

    base = registry.get("depth-anything-v2-base")
    (tmp_path / base.checkpoint).write_bytes(vits_bytes)
    with pytest.raises(WeightsInvalidError, match=r"depth_anything_v2_vitb.pth does not match model 'depth-anything-v2-base'.*another shape") as caught:
        weights.load_network(base, tmp_path)
    assert caught.value.exit_status == 2


# --- downloads -----------------------------------------------------------------------------


def _spec_for(payload: bytes, **changes) -> registry.ModelSpec:
    known = {"size_bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    return dataclasses.replace(SMALL, **{**known, **changes})


@pytest.mark.slow
def test_interrupted_download_resumes_with_range_and_is_renamed_when_verified(tmp_path, vits_bytes):
    spec = _spec_for(vits_bytes)
    cut = len(vits_bytes) * 2 // 5
    with LoopbackFileServer(vits_bytes, cut_after=cut) as server:
        with pytest.raises(DownloadError, match="run the same command again to resume"):
            weights.download(spec, tmp_path, url=server.url, progress=False)
        part = tmp_path / (SMALL.checkpoint + ".part")
        assert sorted(os.listdir(tmp_path)) == [part.name]
        kept = part.stat().st_size
        assert 0 < kept <= cut

        path = weights.download(spec, tmp_path, url=server.url, progress=False)
    assert server.requests[1]["Range"] == f"bytes={kept}-"
    assert path == tmp_path / SMALL.checkpoint
    assert path.read_bytes() == vits_bytes
    assert sorted(os.listdir(tmp_path)) == [SMALL.checkpoint]
    assert weights.download(spec, tmp_path, url="http://127.0.0.1:9/never-asked") == path


@pytest.mark.slow
def test_server_without_ranges_restarts_cleanly(tmp_path, vits_bytes):
    part = tmp_path / (SMALL.checkpoint + ".part")
    part.write_bytes(b"stale bytes that are not the start of the file")
    with LoopbackFileServer(vits_bytes, ranges=False) as server:
        path = weights.download(_spec_for(vits_bytes), tmp_path, url=server.url, progress=False)
    assert path.read_bytes() == vits_bytes and not part.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sha256": "0" * 64}, "sha256 .* expected 0000"),
        ({"size_bytes": 1234}, "expected 1234"),
        ({"sha256": None, "size_bytes": None, "architecture": "depth-anything-v2-vitb"}, "does not match model"),
    ],
    ids=["sha256", "size", "wrong-model"],
)
def test_failed_verification_keeps_nothing(tmp_path, vits_bytes, changes, message):
    with LoopbackFileServer(vits_bytes) as server, pytest.raises(DownloadError, match=message):
        weights.download(_spec_for(vits_bytes, **changes), tmp_path, url=server.url, progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("announced", ["longer", "shorter"])
def test_a_file_of_another_size_is_refused_before_its_body_is_read(tmp_path, announced):
    payload = os.urandom(300_000)
    expected = len(payload) - 1 if announced == "longer" else len(payload) + 1
    spec = _spec_for(payload, size_bytes=expected)
    # The server breaks off after 100 bytes: a size check after the transfer would keep a .part to resume.
    with LoopbackFileServer(payload, cut_after=100) as server, pytest.raises(DownloadError) as caught:
        weights.download(spec, tmp_path, url=server.url, progress=False)
    message = str(caught.value)
    assert f"is {len(payload)} bytes, expected {expected}" in message and "nothing was kept" in message
    assert spec.checkpoint in message and server.url in message and "\n" not in message
    assert os.listdir(tmp_path) == []


def test_a_body_longer_than_the_pinned_size_is_cut_off(tmp_path):
    payload = os.urandom(200_000)
    spec = _spec_for(payload, size_bytes=1000)
    with LoopbackFileServer(payload, content_length=False) as server, pytest.raises(DownloadError) as caught:
        weights.download(spec, tmp_path, url=server.url, progress=False)
    assert "bytes, expected 1000" in str(caught.value) and "nothing was kept" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_a_part_of_the_pinned_size_is_not_fetched_again(tmp_path, monkeypatch):
    payload = os.urandom(5000)
    part = tmp_path / (SMALL.checkpoint + ".part")
    part.write_bytes(payload)
    checked = []
    monkeypatch.setattr(weights, "verify_checkpoint", lambda spec, path: checked.append(Path(path).read_bytes()))
    path = weights.download(_spec_for(payload), tmp_path, url="http://127.0.0.1:9/never-asked", progress=False)
    assert checked == [payload] and path.read_bytes() == payload and not part.exists()


def test_verification_checks_size_and_sha256_before_reading_the_file(tmp_path):
    junk = tmp_path / SMALL.checkpoint
    junk.write_bytes(b"not a checkpoint, and never parsed" * 10)
    pinned = dataclasses.replace(SMALL, size_bytes=4321, sha256="ab" * 32)
    with pytest.raises(WeightsInvalidError, match=f"is {junk.stat().st_size} bytes, expected 4321"):
        weights.verify_checkpoint(pinned, junk)
    with pytest.raises(WeightsInvalidError, match="has sha256 .* expected abab.*not the official file"):
        weights.verify_checkpoint(dataclasses.replace(pinned, size_bytes=junk.stat().st_size), junk)
    with pytest.raises(WeightsMissingError, match="does not exist"):
        weights.verify_checkpoint(SMALL, tmp_path / "absent.pth")


def test_a_broken_environment_fails_loudly_naming_the_module(tmp_path, monkeypatch):
    torch.save(_tiny(), tmp_path / SMALL.checkpoint)
    unpinned = dataclasses.replace(SMALL, sha256=None, size_bytes=None)

    def build(architecture, **options):
        raise ModuleNotFoundError("No module named 'timm'", name="timm")

    monkeypatch.setattr(weights.networks, "build", build)
    with pytest.raises(BrokenEnvironmentError) as caught:
        weights.verify_checkpoint(unpinned, tmp_path / SMALL.checkpoint)
    message = str(caught.value)
    assert "'timm'" in message and SMALL.name in message and "environment" in message
    assert caught.value.exit_status == 1

    payload = (tmp_path / SMALL.checkpoint).read_bytes()
    with LoopbackFileServer(payload) as server, pytest.raises(BrokenEnvironmentError, match="timm"):
        weights.download(unpinned, tmp_path / "models", url=server.url, progress=False)
    assert not (tmp_path / "models" / SMALL.checkpoint).exists()  # nothing unchecked is put in place


def test_not_a_checkpoint_and_http_errors(tmp_path):
    payload = b"<html>not found page served as 200</html>"
    with LoopbackFileServer(payload) as server, pytest.raises(DownloadError, match="not a PyTorch checkpoint"):
        weights.download(_spec_for(payload), tmp_path, url=server.url, progress=False)
    with LoopbackFileServer(payload, status=404) as server, pytest.raises(DownloadError, match="HTTP 404"):
        weights.download(SMALL, tmp_path, url=server.url, progress=False)
    assert os.listdir(tmp_path) == []


def test_offline_download_is_refused_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{_unused_port()}/{SMALL.checkpoint}"
    with pytest.raises(DownloadError) as caught:
        weights.download(SMALL, tmp_path / "models", url=url, progress=False, timeout=5)
    message = str(caught.value)
    assert "\n" not in message and url in message and "Connection refused" in message
    assert caught.value.exit_status == 1
    assert not any((tmp_path / "models").iterdir())
