"""Video files through tf.data: list formats, sampled frames, and every kind of bad input."""

import os
import sys

import numpy as np
import pytest

from jvssl import config as config_lib
from jvssl.data import bad_input, pipeline, video_decode, video_folder
from jvssl.errors import ConfigError, DataError

sys.path.insert(0, os.path.dirname(__file__))
from conftest import REPO  # noqa: E402
from videos import frame_value, truncate_video, write_video  # noqa: E402

RUNLOCAL = os.path.join(REPO, "configs", "videomae_synthetic.py:runlocal")


@pytest.fixture(autouse=True)
def _fresh_counts():
  bad_input.reset()
  yield
  bad_input.reset()


def folder_config(root, listing: str, *overrides: str):
  list_path = os.path.join(root, "list.txt")
  with open(list_path, "w") as f:
    f.write(listing)
  return config_lib.load(
    RUNLOCAL,
    [
      "data.source=video_folder",
      f"data.video_folder.root={root}",
      f"data.video_folder.train_list={list_path}",
      f"data.video_folder.test_list={list_path}",
      "data.shuffle=False",
      *overrides,
    ],
  )


def first_batch(config):
  return next(pipeline.numpy_batches(pipeline.train_dataset(config)))


def frame_numbers(video: np.ndarray) -> np.ndarray:
  """Which frame of write_video each decoded frame is, from its mean grey level."""
  levels = video.reshape(video.shape[:-3] + (-1,)).mean(-1)
  table = np.array([frame_value(i) for i in range(18)])
  return np.abs(levels[..., None] - table).argmin(-1)


def test_lists_in_both_formats(tmp_path):
  (tmp_path / "a.txt").write_text("x/1.mp4 3\nx/2.avi\n\n# comment\nx/with space.mp4 5\n")
  entries = video_folder.read_list(str(tmp_path / "a.txt"), "/root")
  assert [(e.path, e.label) for e in entries] == [
    ("/root/x/1.mp4", 3),
    ("/root/x/2.avi", -1),
    ("/root/x/with space.mp4", 5),
  ]
  (tmp_path / "b.csv").write_text("path,label,start,end\nv.mp4,2,1.5,3\nw.mp4,,,\n")
  entries = video_folder.read_list(str(tmp_path / "b.csv"), "r")
  assert entries[0] == video_folder.Entry("r/v.mp4", 2, 1.5, 3.0)
  assert entries[1] == video_folder.Entry("r/w.mp4", -1, 0.0, 0.0)
  with pytest.raises(ConfigError, match="annotation list not found"):
    video_folder.read_list(str(tmp_path / "nope.txt"), "")


def test_clip_has_the_sampled_frames_in_order(tmp_path):
  write_video(tmp_path / "a.mp4", num_frames=16)
  c = folder_config(str(tmp_path), "a.mp4 7\n", "data.batch_size=4", "data.num_frames=4", "data.frame_stride=3")
  batch = first_batch(c)
  assert batch["video"].shape == (4, 4, 32, 32, 3) and batch["video"].dtype == np.uint8
  assert (batch["label"] == 7).all()
  for clip in frame_numbers(batch["video"]):
    assert (np.diff(clip) == 3).all() and 0 <= clip[0] <= 16 - 10, clip
  starts = {int(clip[0]) for clip in frame_numbers(batch["video"])}
  assert len(starts) > 1  # Windows are random per example.


def test_bad_files_are_skipped_counted_and_listed(tmp_path):
  write_video(tmp_path / "good.mp4", num_frames=12)
  (tmp_path / "empty.mp4").write_bytes(b"")
  (tmp_path / "corrupt.mp4").write_bytes(b"\x00not a video" * 64)
  good = (tmp_path / "good.mp4").read_bytes()
  (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 3])
  c = folder_config(
    str(tmp_path),
    "good.mp4 1\nempty.mp4 2\ncorrupt.mp4 3\nmissing.mp4 4\n",
    "data.batch_size=4",
    "data.max_bad_fraction=0.9",
  )
  batch = first_batch(c)
  assert (batch["label"] == 1).all()  # Every bad entry was stood in for by the good video.
  counts = bad_input.skip_counts()
  assert counts.get("empty", 0) >= 1 and counts.get("missing", 0) >= 1 and counts.get("unreadable", 0) >= 1
  out = tmp_path / "bad.tsv"
  bad_input.write_bad_files(str(out))
  listed = dict(line.split("\t") for line in out.read_text().splitlines())
  assert set(listed) == {str(tmp_path / n) for n in ("empty.mp4", "corrupt.mp4", "missing.mp4")}
  assert listed[str(tmp_path / "missing.mp4")] == "missing"


def test_too_many_bad_videos_in_a_batch_is_a_clear_error(tmp_path):
  write_video(tmp_path / "good.mp4", num_frames=12)
  c = folder_config(
    str(tmp_path), "good.mp4 1\nm1.mp4 2\nm2.mp4 3\nm3.mp4 4\n", "data.batch_size=4", "data.max_bad_fraction=0.5"
  )
  with pytest.raises(DataError, match="max_bad_fraction"):
    first_batch(c)


def test_nothing_readable_is_a_clear_error(tmp_path):
  c = folder_config(str(tmp_path), "m1.mp4 1\nm2.mp4 2\n", "data.batch_size=2", "data.max_bad_fraction=1.0")
  with pytest.raises(DataError, match="could not be read"):
    first_batch(c)


def test_short_video_is_padded_with_its_last_frame(tmp_path):
  write_video(tmp_path / "short.mp4", num_frames=3)
  c = folder_config(str(tmp_path), "short.mp4 0\n", "data.batch_size=2", "data.num_frames=4", "data.frame_stride=2")
  batch = first_batch(c)
  np.testing.assert_array_equal(frame_numbers(batch["video"]), [[0, 2, 2, 2]] * 2)
  assert bad_input.repair_counts()["short"] >= 2  # tf.data may have read ahead.
  assert bad_input.skip_counts() == {}


def test_truncated_video_is_sampled_within_the_frames_it_holds(tmp_path):
  # The headers promise 132 frames, the data holds 12: every window lies in those 12, none is skipped.
  truncate_video(write_video(tmp_path / "cut.mp4", num_frames=132, faststart=True), 12)
  c = folder_config(str(tmp_path), "cut.mp4 0\n", "data.batch_size=8", "data.num_frames=4", "data.frame_stride=3")
  frames = frame_numbers(first_batch(c)["video"])
  assert (np.diff(frames) == 3).all() and frames.max() <= 11, frames
  assert bad_input.skip_counts() == {} and bad_input.repair_counts()["truncated"] >= 8


def test_a_file_cut_before_its_first_whole_frame_is_skipped(tmp_path):
  path = truncate_video(write_video(tmp_path / "cut.mp4", num_frames=30, faststart=True), 0)
  with pytest.raises(video_decode.BadVideo, match="header gives 30 frames, none is whole") as e:
    video_decode.decode_all(path)
  assert e.value.reason == "no_frames"


@pytest.mark.parametrize(
  "pix_fmt,size", [("gray", (32, 40)), ("yuv422p", (30, 46)), ("yuv420p", (33, 47)), ("yuv444p", (33, 47))]
)
def test_unusual_pixel_formats_and_sizes_decode_to_rgb(tmp_path, pix_fmt, size):
  codec = "libx264" if size[0] % 2 == 0 and pix_fmt != "gray" else "ffv1"  # x264 wants even sizes.
  write_video(tmp_path / "v.mkv", num_frames=8, size=size, codec=codec, pix_fmt=pix_fmt)
  c = folder_config(str(tmp_path), "v.mkv 0\n", "data.batch_size=2", "data.num_frames=4", "data.frame_stride=1")
  batch = first_batch(c)
  assert batch["video"].shape == (2, 4, 32, 32, 3)
  assert bad_input.skip_counts() == {}
  assert (np.diff(frame_numbers(batch["video"]), axis=-1) == 1).all()


def test_csv_window_limits_sampling(tmp_path):
  write_video(tmp_path / "a.mp4", num_frames=18, fps=10)
  (tmp_path / "list.csv").write_text("path,label,start,end\na.mp4,1,1.0,1.6\n")
  c = config_lib.load(
    RUNLOCAL,
    [
      "data.source=video_folder",
      f"data.video_folder.root={tmp_path}",
      f"data.video_folder.train_list={tmp_path / 'list.csv'}",
      "data.batch_size=4",
      "data.num_frames=4",
      "data.frame_stride=1",
    ],
  )
  frames = frame_numbers(first_batch(c)["video"])
  assert frames.min() >= 10 and frames.max() <= 16, frames


def test_eval_masks_out_stood_in_videos(tmp_path):
  write_video(tmp_path / "good.mp4", num_frames=12)
  c = folder_config(str(tmp_path), "good.mp4 1\nmissing.mp4 2\n", "data.max_bad_fraction=1.0")
  ds, n = pipeline.eval_dataset(c, "test", batch_size=2)
  batch = next(pipeline.numpy_batches(ds))
  assert n == 2 and batch["mask"].tolist() == [1, 0]
