"""Environments and videos: gymnasium spaces, and mp4s that browsers play and seek."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from worker.pipelines.lunar_lander.environment import make_env, video_fps, write_mp4


def test_lunar_lander_has_the_books_spaces_and_renders_headless():
    env = make_env("LunarLander-v3", render=True)
    state, _ = env.reset(seed=0)
    assert state.shape == (8,) and env.action_space.n == 4
    assert env.render().shape == (400, 600, 3)
    assert video_fps(env) == 50
    env.close()


def test_mp4_is_h264_yuv420p_with_the_index_first(tmp_path):
    import imageio_ffmpeg

    frames = [np.full((40, 60, 3), value, dtype=np.uint8) for value in range(0, 250, 10)]
    path = write_mp4(frames, tmp_path / "clip.mp4", fps=25)
    content = path.read_bytes()
    assert content[4:8] == b"ftyp"
    assert content.index(b"moov") < content.index(b"mdat")  # faststart: seekable before fully loaded
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    assert "Video: h264" in probe.stderr and "yuv420p" in probe.stderr and "60x40" in probe.stderr
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 25


def test_an_empty_video_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], tmp_path / "empty.mp4", fps=25)
