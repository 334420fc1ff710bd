"""Streaming decode of videos and numbered image sequences (estimators/video_io.py)."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from depth360.estimators.errors import BadInputError
from depth360.estimators.media import video_io

WIDTH, HEIGHT = 64, 32


def frame_image(index: int) -> np.ndarray:
    """A frame whose red level says its index and with a smooth green ramp (codec friendly)."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[..., 0] = (20 * index) % 240
    image[..., 1] = np.linspace(0, 250, WIDTH, dtype=np.uint8)[None]
    return image


def make_video(path, count=12, codec="libx264", pix_fmt="yuv420p", container_options=None, pts_ms=None):
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error:crf=10"}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(frame_image(index), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def red_index(rgb: np.ndarray) -> int:
    return int(round(float(rgb[..., 0].mean()) * 255 / 20))


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "bits"),
    [("clip.mp4", "libx264", "yuv420p", 8), ("clip.mkv", "libx264", "yuv420p", 8),
     ("clip.mov", "libx265", "yuv420p10le", 10)],
)
def test_decodes_every_frame_in_order(tmp_path, name, codec, pix_fmt, bits):
    path = make_video(tmp_path / name, codec=codec, pix_fmt=pix_fmt)
    info = video_io.probe(path)
    assert (info.kind, info.name, info.width, info.height, info.bit_depth) == ("video", "clip", WIDTH, HEIGHT, bits)
    assert info.codec == ("hevc" if codec == "libx265" else "h264")
    assert not info.variable_frame_rate and info.fps == pytest.approx(24)
    frames = list(video_io.read_frames(info))
    assert [n for n, _ in frames] == list(range(1, 13))
    for number, rgb in frames:
        assert rgb.dtype == np.float32 and rgb.shape == (HEIGHT, WIDTH, 3)
        assert red_index(rgb) == number - 1
    if bits == 10:  # finer than 8-bit steps survive
        levels = np.unique(np.round(frames[0][1][..., 1] * 65535))
        assert np.any(np.abs(levels / 257 - np.round(levels / 257)) > 0.1)


def test_frame_range_and_skipping(tmp_path):
    path = make_video(tmp_path / "clip.mp4")
    got = [n for n, rgb in video_io.read_frames(path, 3, 7, wanted=lambda n: n != 5)]
    assert got == [3, 4, 6, 7]
    assert [red_index(rgb) for _, rgb in video_io.read_frames(path, 12, 12)] == [11]
    with pytest.raises(BadInputError, match="has 12 frames"):
        list(video_io.read_frames(path, 10, 20))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("31-60", (31, 60)), ("5", (5, 5)), ("7-", (7, None)), (" 1 - 2 ", (1, 2))],
)
def test_parse_frame_range(text, expected):
    parsed = video_io.parse_frame_range(text)
    assert (parsed.first, parsed.last) == expected


@pytest.mark.parametrize("text", ["0-4", "5-3", "a-b", "", "-3"])
def test_parse_frame_range_rejects(text):
    with pytest.raises(BadInputError, match="--frames"):
        video_io.parse_frame_range(text)


def write_sequence(folder, numbers, name="shot_{:05d}.png"):
    folder.mkdir(parents=True, exist_ok=True)
    for index, number in enumerate(numbers):
        cv2.imwrite(str(folder / name.format(number)), frame_image(index)[..., ::-1])


def test_image_sequence_by_pattern_and_by_folder(tmp_path):
    write_sequence(tmp_path / "shot", range(1001, 1009))
    by_pattern = video_io.probe(tmp_path / "shot" / "shot_%05d.png")
    by_folder = video_io.probe(tmp_path / "shot")
    for info in (by_pattern, by_folder):
        assert (info.kind, info.name, info.frame_count) == ("sequence", "shot", 8)
        frames = list(video_io.read_frames(info, 2, 4))
        assert [n for n, _ in frames] == [2, 3, 4]
        assert [red_index(rgb) for _, rgb in frames] == [1, 2, 3]  # frame 1 is the first file


def test_gap_in_a_sequence_names_the_missing_file(tmp_path):
    write_sequence(tmp_path / "shot", [1, 2, 3, 5, 6])
    for source in (tmp_path / "shot" / "shot_%05d.png", tmp_path / "shot"):
        with pytest.raises(BadInputError, match=r"shot_00004\.png is missing \(frame 4 of the sequence"):
            video_io.probe(source)


def test_folder_with_two_runs_and_empty_pattern(tmp_path):
    write_sequence(tmp_path / "mixed", [1, 2], name="a_{:03d}.png")
    write_sequence(tmp_path / "mixed", [1, 2], name="b_{:03d}.png")
    with pytest.raises(BadInputError, match="several numbered runs"):
        video_io.probe(tmp_path / "mixed")
    with pytest.raises(BadInputError, match="no file matches"):
        video_io.probe(tmp_path / "mixed" / "c_%03d.png")


def test_truncated_videos_name_the_file_and_the_last_good_frame(tmp_path):
    streamable = make_video(tmp_path / "fast.mp4", count=40, container_options={"movflags": "+faststart"})
    matroska = make_video(tmp_path / "clip.mkv", count=40)
    plain = make_video(tmp_path / "plain.mp4", count=40)
    for path in (streamable, matroska, plain):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 6 // 10])
    for path in (streamable, matroska):
        with pytest.raises(BadInputError) as caught:
            list(video_io.read_frames(path))
        message = str(caught.value)
        assert str(path) in message and "last good frame" in message
        good = int(message.replace(str(path), "").split("frame ")[1].split(" ")[0])
        assert 1 <= good < 40
    with pytest.raises(BadInputError, match=r"cannot open video .*plain\.mp4.*no frame could be decoded"):
        video_io.probe(plain)


def test_variable_frame_rate_is_detected_and_every_frame_kept(tmp_path):
    times = [0, 40, 80, 200, 240, 400, 440, 480, 600, 640, 700, 740]
    path = make_video(tmp_path / "vfr.mp4", pts_ms=times)
    info = video_io.probe(path)
    assert info.variable_frame_rate
    assert "decode order" in info.notes[0] and "vfr.mp4" in info.notes[0]
    assert [red_index(rgb) for _, rgb in video_io.read_frames(info)] == list(range(12))
    assert not video_io.probe(make_video(tmp_path / "cfr.mkv")).variable_frame_rate


def test_not_a_source(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BadInputError, match="is not a video"):
        video_io.probe(tmp_path / "notes.txt")
    with pytest.raises(BadInputError, match="does not exist"):
        video_io.probe(tmp_path / "missing.mp4")
