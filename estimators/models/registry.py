"""The model registry: one frozen spec per model the engine offers, no per-model branching.

Names are those the CLI and the panel show (DESIGN.md). A spec says what a model is
(family, licence, output kind), where its official checkpoint comes from, and how its
input is prepared; the network itself is built from `architecture` by
`estimators.networks` when a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OutputKind = Literal["relative-disparity", "metric-depth", "metric-distance"]  # models.plugins.ESTIMATOR_KINDS
Family = Literal["depth-anything-v2", "midas", "stereo"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

_DA_HF = "https://huggingface.co/depth-anything"
_MIDAS_RELEASES = "https://github.com/isl-org/MiDaS/releases/download"


@dataclass(frozen=True)
class ModelSpec:
    """What the engine knows about one model."""

    name: str
    title: str
    family: Family
    license: str
    commercial_use: bool
    kind: OutputKind
    architecture: str = ""  # key into estimators.networks; "" for models without a network
    checkpoint: str | None = None  # official file name, loaded unchanged
    url: str | None = None
    size_bytes: int | None = None  # expected size of the official file, when known
    sha256: str | None = None  # when the publisher gives one
    input_size: int = 518  # the network's native input side
    multiple_of: int = 14  # network input sides are rounded to this
    resize_method: Literal["lower_bound", "minimal"] = "lower_bound"  # the official rule
    keep_aspect_ratio: bool = True  # False: the official transform squashes to a square
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    max_depth: float | None = None  # metric models: the head's range in metres

    @property
    def summary(self) -> str:
        """One line for menus and `depth360 models`."""
        use = "" if self.commercial_use else ", non-commercial"
        return f"{self.title} ({self.license}{use})"


# Pinned Hugging Face revisions and published checksums, where known; "main" otherwise.
_DA_PINNED = {
    "vits": ("03876f8651c73a60fe4c2c48294e09fcb6838fcf",
             "715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378"),
}


def _depth_anything(size: str, encoder: str, license: str, commercial: bool) -> ModelSpec:
    file = f"depth_anything_v2_{encoder}.pth"
    repo = f"Depth-Anything-V2-{size.capitalize()}"
    revision, sha256 = _DA_PINNED.get(encoder, ("main", None))
    return ModelSpec(
        name=f"depth-anything-v2-{size}",
        title=f"Depth Anything V2 {size.capitalize()}",
        family="depth-anything-v2",
        license=license,
        commercial_use=commercial,
        kind="relative-disparity",
        architecture=f"depth-anything-v2-{encoder}",
        checkpoint=file,
        url=f"{_DA_HF}/{repo}/resolve/{revision}/{file}",
        sha256=sha256,
    )


def _depth_anything_metric(scene: str, dataset: str, max_depth: float, size: str, encoder: str) -> ModelSpec:
    file = f"depth_anything_v2_metric_{dataset.lower()}_{encoder}.pth"
    repo = f"Depth-Anything-V2-Metric-{dataset}-{size.capitalize()}"
    small = size == "small"
    return ModelSpec(
        name=f"depth-anything-v2-metric-{scene}-{size}",
        title=f"Depth Anything V2 Metric {scene.capitalize()} {size.capitalize()}",
        family="depth-anything-v2",
        license="Apache-2.0" if small else "CC-BY-NC-4.0",
        commercial_use=small,
        kind="metric-depth",  # trained on depth to the image plane (Hypersim converted, VKITTI as is)
        architecture=f"depth-anything-v2-{encoder}",
        checkpoint=file,
        url=f"{_DA_HF}/{repo}/resolve/main/{file}",
        max_depth=max_depth,
    )


def _midas(stem: str, release: str, input_size: int, title: str, keep_aspect: bool = True) -> ModelSpec:
    return ModelSpec(
        name=f"midas-{stem.replace('_', '-')}",
        title=title,
        family="midas",
        license="MIT",
        commercial_use=True,
        kind="relative-disparity",
        architecture=f"midas-{stem.replace('_', '-')}",
        checkpoint=f"{stem}.pt",
        url=f"{_MIDAS_RELEASES}/{release}/{stem}.pt",
        input_size=input_size,
        multiple_of=32,
        resize_method="minimal",
        keep_aspect_ratio=keep_aspect,
        mean=HALF,
        std=HALF,
    )


_SPECS: tuple[ModelSpec, ...] = (
    _depth_anything("small", "vits", "Apache-2.0", True),
    _depth_anything("base", "vitb", "CC-BY-NC-4.0", False),
    _depth_anything("large", "vitl", "CC-BY-NC-4.0", False),
    *(
        _depth_anything_metric(scene, dataset, max_depth, size, encoder)
        for scene, dataset, max_depth in (("indoor", "Hypersim", 20.0), ("outdoor", "VKITTI", 80.0))
        for size, encoder in (("small", "vits"), ("base", "vitb"), ("large", "vitl"))
    ),
    _midas("dpt_beit_large_512", "v3_1", 512, "MiDaS v3.1 BEiT-L 512"),
    _midas("dpt_beit_base_384", "v3_1", 384, "MiDaS v3.1 BEiT-B 384"),
    _midas("dpt_swin2_large_384", "v3_1", 384, "MiDaS v3.1 Swin2-L 384", keep_aspect=False),
    _midas("dpt_swin2_tiny_256", "v3_1", 256, "MiDaS v3.1 Swin2-T 256", keep_aspect=False),
    _midas("dpt_levit_224", "v3_1", 224, "MiDaS v3.1 LeViT 224", keep_aspect=False),
    _midas("dpt_large_384", "v3", 384, "MiDaS v3.0 DPT-Large 384"),
    _midas("dpt_hybrid_384", "v3", 384, "MiDaS v3.0 DPT-Hybrid 384"),
    ModelSpec(
        name="stereo",
        title="Stereo matching (no network)",
        family="stereo",
        license="GPL-3.0-or-later",
        commercial_use=True,
        kind="metric-distance",
    ),
)

DEFAULT_MODEL = "depth-anything-v2-small"


def all_specs() -> tuple[ModelSpec, ...]:
    """Every model the engine offers, in display order."""
    return _SPECS


def find(name: str) -> ModelSpec | None:
    """The spec called `name`, or None."""
    return next((spec for spec in _SPECS if spec.name == name), None)


def get(name: str) -> ModelSpec:
    """The spec called `name`; a ValueError listing the known names otherwise."""
    spec = find(name)
    if spec is None:
        known = ", ".join(spec.name for spec in _SPECS)
        raise ValueError(f"unknown model {name!r}; known models: {known}")
    return spec
