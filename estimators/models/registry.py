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
Family = Literal["depth-anything-v2", "video-depth-anything", "midas", "stereo"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


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
    revision: str | None = None  # immutable revision `url` names (Hugging Face commit, GitHub release tag)
    size_bytes: int | None = None  # byte size of the official file (pinned from two sources)
    sha256: str | None = None  # sha256 of the official file (pinned from two sources)
    unverified: str = ""  # which of revision/sha256/size is not pinned, and why (empty: fully pinned)
    input_size: int = 518  # the network's native input side
    multiple_of: int = 14  # network input sides are rounded to this
    resize_method: Literal["lower_bound", "minimal"] = "lower_bound"  # the official rule
    keep_aspect_ratio: bool = True  # False: the official transform squashes to a square
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    max_depth: float | None = None  # metric models: the head's range in metres
    clip_window: int = 0  # video networks: the most frames one forward pass takes (0: an image network)

    @property
    def unpinned(self) -> tuple[str, ...]:
        """Which of "revision", "sha256", "size" the download is not pinned to; () when it is."""
        if not self.checkpoint:
            return ()
        values = (("revision", self.revision), ("sha256", self.sha256), ("size", self.size_bytes))
        return tuple(name for name, value in values if value is None)

    @property
    def summary(self) -> str:
        """One line for menus and `depth360 models`."""
        use = "" if self.commercial_use else ", non-commercial"
        return f"{self.title} ({self.license}{use})"


# --- Pins ----------------------------------------------------------------------------------
# Every checkpoint download is pinned to an immutable location (a Hugging Face commit in the
# URL, or a GitHub release asset, immutable per tag and name) and to the file's sha256 and byte
# size, each value taken from two independent sources. A value with fewer than two sources is
# left out (None) and the spec's `unverified` says so; `depth360 models` shows the gaps.
#
# Sources cited below (stored public copies, read for this pin):
#   UTVFX   capsuleutkarsh-design/UTVFX_AI_VFX_Suit first_setup.py (REV, MODELS) @127c9b7d
#   CLIP3D  ParamThakkar123/ClipTo3D checkpoints.py (REGISTRY) @7dcd3d01
#   MOZO    datamarkin/mozo tools/fetch/depth_anything_v2.py (_DIGESTS, "read from Hugging
#           Face's API") @bc6c021d
#   PYSLAM  Dkaka/pyslam scripts/install_extra.sh (install_depth_anything_v2 sizes) @0c0c12ad
#   HF      huggingface.co pages of the publisher (LFS pointer "oid sha256 / size" of the
#           upload commit, "Git LFS Details" of a blob, or a tree/commits page at a revision)
#   index   a stored public file whose repository the search index does not name (its id)

_DA_HF = "https://huggingface.co/depth-anything"

# file -> (Hugging Face revision, sha256, size in bytes, what is not pinned and why)
_DA_PINS: dict[str, tuple[str | None, str | None, int | None, str]] = {
    # revision: CLIP3D, UTVFX. sha256 + size: HF depth-anything/Depth-Anything-V2-Small
    # commit/65ae6e3ee054faf5f2a0b3d079fbf181aaad86a0 (LFS pointer), CLIP3D, UTVFX.
    "depth_anything_v2_vits.pth": (
        "03876f8651c73a60fe4c2c48294e09fcb6838fcf",
        "715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378", 99218434, ""),
    # revision: CLIP3D, UTVFX, HF Depth-Anything-V2-Base tree/a4e71a6c... lists the file.
    # sha256 + size: HF Depth-Anything-V2-Base commit/f11825d6a03793a70dfb594c89a0e990986de230
    # (LFS pointer), CLIP3D, UTVFX.
    "depth_anything_v2_vitb.pth": (
        "a4e71a6c2ce52fe50df0f212066b0d4a87be9b5e",
        "0d2b7002e62d39d655571c371333340bd88f67ab95050c03591555aa05645328", 389961218, ""),
    # revision: CLIP3D, UTVFX. sha256 + size: CLIP3D, UTVFX, and the same blob re-uploaded on HF
    # (simon123905/ShadowDiffusion commit/c3cf4f8 LFS pointer; scenario-labs/depth blob b4a77d0).
    "depth_anything_v2_vitl.pth": (
        "cbbb86a30ce19b5684b7a05155dc7e6cbc7685b9",
        "a7ea19fa0ed99244e67b624c72b8580b7e9553043245905be58796a608eb9345", 1341395338, ""),
    # revision: UTVFX; index 55288726499 (CHECKPOINT_URL at this revision, same sha256 and size).
    # sha256: UTVFX, MOZO, index 55288726499. size: UTVFX, PYSLAM, index 55288726499.
    "depth_anything_v2_metric_hypersim_vits.pth": (
        "3bc65d4e14a6786a61acec16453c50e12bf5f338",
        "b782898d8a3e8be1f639de33837ed85e9b4b73e40f8f5e5cd99067588d722545", 99222290, ""),
    # revision: only UTVFX gives one (4ebcd7fd0858cbb953451619ca943ea39ec08e00); no second source,
    # so the URL stays on main (sha256 and size still pin the content). sha256: HF
    # Depth-Anything-V2-Metric-Hypersim-Base blob/main "Git LFS Details" (upload 4e6ee43), MOZO,
    # UTVFX. size: UTVFX, PYSLAM.
    "depth_anything_v2_metric_hypersim_vitb.pth": (
        None,
        "9dc9e274c5eff55c6daf27b660c0ced0eca4e8593a6da90cdcb04d2b4d3f3fa2", 389965138,
        "revision: one source only (4ebcd7fd0858cbb953451619ca943ea39ec08e00, UTVFX)"),
    # revision: UTVFX; HF Depth-Anything-V2-Metric-Hypersim-Large tree/main (head 7972080, the
    # file unchanged since its upload). sha256: HF blob/2c34ee4472cd0e02174fef0a39376cbdcbad295c
    # "Git LFS Details", MOZO, UTVFX. size: UTVFX, PYSLAM.
    "depth_anything_v2_metric_hypersim_vitl.pth": (
        "79720800638389a78b2defc92caa885104f69974",
        "6f82ff2bc543ac02ddff4aa31fa363676a8305dd3ccf04e80e2af115a044cb6d", 1341401882, ""),
    # revision: UTVFX; HF Depth-Anything-V2-Metric-VKITTI-Small blob/c725b858... (this revision,
    # "Git LFS Details" with this sha256). sha256: that HF page, MOZO, UTVFX. size: UTVFX, PYSLAM.
    "depth_anything_v2_metric_vkitti_vits.pth": (
        "c725b8589bdf6ab04072cab74c0467830db80d6d",
        "9203e538d35255c90dda4b7fedb47ff33fe725497bcca3b1e53b3a65ee63f0cb", 99221808, ""),
    # revision: UTVFX; HF Depth-Anything-V2-Metric-VKITTI-Base tree/main (head e96fd0c, the file
    # unchanged since its upload). sha256 + size: HF commit/c3208e5f0ea82b95f0e418ce28008d8aed48d205
    # (LFS pointer), UTVFX; sha256 also MOZO, size also PYSLAM.
    "depth_anything_v2_metric_vkitti_vitb.pth": (
        "e96fd0c8cedf1825a55b9c61309f754982948df0",
        "4dad67a7cc10b462bca48e6b8569c762b8eb3c1adada170a3851a6d3ba37bb3e", 389964656, ""),
    # revision: UTVFX; HF Depth-Anything-V2-Metric-VKITTI-Large commits/main (head 070e97e, the
    # file unchanged since its upload). sha256 + size: HF
    # commit/d749ee03c2788eea07378440e26a530442dc4fc9 (LFS pointer), UTVFX; sha256 also MOZO,
    # size also PYSLAM.
    "depth_anything_v2_metric_vkitti_vitl.pth": (
        "070e97e4b80e317ec1d03c19927304f4091a180b",
        "239b1054a369e66da2576e9a118d6d7c12d90dc8ebe609579a9a09cd8e05fe38", 1341401064, ""),
}

_MIDAS_RELEASES = "https://github.com/isl-org/MiDaS/releases/download"
_MIDAS_NO_SOURCES = "sha256 and size: no two independent sources found"

# file -> (sha256, size in bytes, what is not pinned and why); the release tag is the revision.
_MIDAS_PINS: dict[str, tuple[str | None, int | None, str]] = {
    # sha256 + size: HF ckpt/ControlNet-v1-1 commit/3bda72be44aa8644c9fc72690393e96b49a9ebd2
    # (LFS pointer of a copy), index 65939655272 ("official MiDaS tag v3_1", same sha256 and
    # size); sha256 also HF spaces/imsuperkong/dreamdrone blob "Git LFS Details"; size also
    # index 54498696906 (a download of the release asset).
    "dpt_beit_large_512.pt": (
        "9e9e900747e9e8b3112df716979219836a27716277b3d0dc53889cbba8b82328", 1581966003, ""),
    # sha256 + size: HF AunyMoons/loras-pack commit/15fbb247edb66f1b3e5104dcbb7381086fcd166b
    # (LFS pointer of dpt_large_384.pt), index 60379158618 (same sha256 and size, "equal to the
    # MiDaS GitHub release asset"); sha256 also index 59368326761 (dpt_large_384.pt) and the
    # DPT release name dpt_large-midas-2f21e586.pt (torch.hub names carry the sha256 prefix).
    "dpt_large_384.pt": (
        "2f21e586477d90cb9624c7eef5df7891edca49a1c4795ee2cb631fd4daa6ca69", 1376378527, ""),
    "dpt_beit_base_384.pt": (None, None, _MIDAS_NO_SOURCES),
    "dpt_swin2_large_384.pt": (None, None, _MIDAS_NO_SOURCES),
    # One copy only: HF spaces/36Pix/autocomp-demo midas/dpt_swin2_tiny_256.pt, sha256
    # 0a859caa18be4bf9375e87dc6b684f6e83dc45b2dc13d8c8b89f6acb2a17a2c5, "172 MB" (no byte count).
    "dpt_swin2_tiny_256.pt": (None, None, "sha256: one source only; size: none found"),
    "dpt_levit_224.pt": (None, None, _MIDAS_NO_SOURCES),
    # The DPT release's dpt_hybrid-midas-501f0c75.pt is 501f0c75...0853, 492757791 bytes in
    # several sources, but none ties the MiDaS v3 asset dpt_hybrid_384.pt to those bytes (and a
    # copy under that name on HF, lllpppyyy/BRA.safetensors, has another sha256 at the same size).
    "dpt_hybrid_384.pt": (None, None, _MIDAS_NO_SOURCES),
}


# Video Depth Anything (depth-anything/[Metric-]Video-Depth-Anything-{Small,Base,Large}), same layout.
# Sources cited below (stored public copies, read for this pin; the index names no repository):
#   LOCK    index 70607985332: a model lock builder (hf_file(...) rows: revision, size, sha256 of
#           all six files, "immutable revisions and SHA256 identities")
#   L2S     index 70874808512 (also 71414262168, an earlier copy): an extension's CHECKPOINTS
#           table (revision and "LFS sha256" of all six files; no sizes)
#   MERE    index 60259645993 (a checkpoint converter: revision, byteCount, sha256 of both Small
#           files); 60648261882 and 56677606402 (revision and sha256 of both Small files)
#   WAN     index 67590507911 (also 60624023258): revision, size, sha256 of Base and Large
#   index   other stored public files, by id
_VDA_PINS: dict[str, tuple[str | None, str | None, int | None, str]] = {
    # revision: LOCK, MERE, 68885695237, 60653180006. sha256: LOCK, MERE, 59610279482, 63235338761.
    # size: LOCK, MERE, 70156966332, 62113650502.
    "video_depth_anything_vits.pth": (
        "256875362cff76724b920335dfb4b29dd611f66e",
        "13379300b739e659f076a59d52e9801bd8d38c541a7e71f73bbca4dcfb013609", 116440756, ""),
    # revision, sha256, size: LOCK, WAN; revision and sha256 also L2S; size also 65968906814, 63361755951.
    "video_depth_anything_vitb.pth": (
        "7231d0c6e260f54f103eba5005d01f6efa4f43db",
        "775e578e8f9431ec0496514aa466bd0a1f67c28d0f518267809f35a43c04329b", 458247082, ""),
    # revision, sha256, size: LOCK, WAN; revision and sha256 also L2S; size also 70777227658.
    "video_depth_anything_vitl.pth": (
        "7aafbcb5c6af0bac741aad2b6471894fb4761afa",
        "43df27c6b396042ba34ff7b798ab279f64d204d2e86d7a373968f8fa36d0e6fa", 1538392012, ""),
    # revision and sha256: LOCK, L2S, MERE. size: LOCK, MERE, 71517158380, 60428802003.
    "metric_video_depth_anything_vits.pth": (
        "273d090f2ce17df50c2872d82c8322c45da5b4dd",
        "3c28432b4e1f0d7bb31cad5151b6313b49457db5aa58d82e85bfb0f8b1311b33", 116444063, ""),
    # revision and sha256: LOCK, L2S. size: LOCK only (458249567), so it is left out.
    "metric_video_depth_anything_vitb.pth": (
        "f6a245abad4b5a5b0d26722c8e1767ef310c547d",
        "f6f58576b9680a112f2428d4f39aff92656d3ae85745b0164675ace8d5b1fade", None,
        "size: one source only (458249567 bytes, index 70607985332)"),
    # revision and sha256: LOCK, L2S. size: LOCK only (1538348216), so it is left out.
    "metric_video_depth_anything_vitl.pth": (
        "607fcdbd454b95c3bd39abbd3054142869a527d3",
        "24eba25342e7ee0f054be25da6a852ebd7cfa40cd6bf41a353ecb6abfe24e620", None,
        "size: one source only (1538348216 bytes, index 70607985332)"),
}


def _hugging_face_download(repo: str, file: str) -> dict:
    """checkpoint, url and pins of a depth-anything file (the URL names the pinned revision)."""
    revision, sha256, size, unverified = {**_DA_PINS, **_VDA_PINS}[file]
    return dict(
        checkpoint=file,
        url=f"{_DA_HF}/{repo}/resolve/{revision or 'main'}/{file}",
        revision=revision,
        sha256=sha256,
        size_bytes=size,
        unverified=unverified,
    )


def _midas_download(release: str, file: str) -> dict:
    """checkpoint, url and pins of a MiDaS release asset (immutable per tag and name)."""
    sha256, size, unverified = _MIDAS_PINS[file]
    return dict(
        checkpoint=file,
        url=f"{_MIDAS_RELEASES}/{release}/{file}",
        revision=f"release {release}",
        sha256=sha256,
        size_bytes=size,
        unverified=unverified,
    )


def _depth_anything(size: str, encoder: str, license: str, commercial: bool) -> ModelSpec:
    file = f"depth_anything_v2_{encoder}.pth"
    repo = f"Depth-Anything-V2-{size.capitalize()}"
    return ModelSpec(
        name=f"depth-anything-v2-{size}",
        title=f"Depth Anything V2 {size.capitalize()}",
        family="depth-anything-v2",
        license=license,
        commercial_use=commercial,
        kind="relative-disparity",
        architecture=f"depth-anything-v2-{encoder}",
        **_hugging_face_download(repo, file),
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
        **_hugging_face_download(repo, file),
        max_depth=max_depth,
    )


def _video_depth_anything(size: str, encoder: str, metric: bool) -> ModelSpec:
    small = size == "small"
    prefix = "metric_" if metric else ""
    title = f"Video Depth Anything{' Metric' if metric else ''} {size.capitalize()}"
    return ModelSpec(
        name=f"video-depth-anything-{'metric-' if metric else ''}{size}",
        title=title,
        family="video-depth-anything",
        license="Apache-2.0" if small else "CC-BY-NC-4.0",
        commercial_use=small,
        # metric: metres of planar depth (the official metric run.py back-projects it as z)
        kind="metric-depth" if metric else "relative-disparity",
        architecture=f"video-depth-anything-{encoder}",
        **_hugging_face_download(f"{'Metric-' if metric else ''}Video-Depth-Anything-{size.capitalize()}",
                                 f"{prefix}video_depth_anything_{encoder}.pth"),
        clip_window=32,
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
        **_midas_download(release, f"{stem}.pt"),
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
    *(
        _video_depth_anything(size, encoder, metric)
        for metric in (False, True)
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
