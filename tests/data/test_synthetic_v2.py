"""Version 2 of the synthetic set: the index fixes shape and motion, every clip draws the rest afresh, so colour
no longer tells whether two clips come from one video."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

from jvssl import config as config_lib
from jvssl.data import pipeline
from jvssl.errors import ConfigError

# A logistic regression on colour statistics tells clips of one video from clips of two videos of the same
# class no better than chance plus this, on 256 held-out pairs (one standard error of chance is 0.031).
TOLERANCE = 0.1
NUM_VIDEOS = 256


def source(*overrides, version=2):
  spec = f"configs/ssl_synthetic.py:simclr,runlocal,version={version}"
  return pipeline.make_source(config_lib.load(spec, list(overrides)).data, "train")


def examples(src, indices, seed):
  """{"video": uint8 [N, K, T, S, S, 3], "label": [N]} of videos `indices`, example seed (seed, index)."""
  ds = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))
  ds = ds.map(lambda i: src.load(i, tf.stack([tf.constant(seed, tf.int64), i])), num_parallel_calls=2)
  return next(ds.batch(len(indices)).as_numpy_iterator())


def test_index_fixes_shape_and_motion_and_each_sample_draws_the_rest():
  shape_src, motion_src = source(), source("data.synthetic.label=motion")
  assert shape_src.num_classes == 8
  a, b = examples(shape_src, range(20), 1), examples(motion_src, range(20), 1)
  np.testing.assert_array_equal(a["label"], np.arange(20) % 8)
  np.testing.assert_array_equal(b["label"], np.arange(20) // 8)
  # The labelling does not change the videos, so one model is evaluated on both.
  np.testing.assert_array_equal(a["video"], b["video"])
  np.testing.assert_array_equal(a["video"], examples(shape_src, range(20), 1)["video"])
  again = examples(shape_src, range(20), 2)["video"]
  assert a["video"].shape == (20, 2, 4, 32, 32, 3)
  # Another example seed, or the other clip of the same sample: another appearance.
  assert all(not np.array_equal(a["video"][i], again[i]) for i in range(20))
  assert all(not np.array_equal(a["video"][i, 0], a["video"][i, 1]) for i in range(20))


def test_bad_settings_are_one_line_errors():
  with pytest.raises(ConfigError, match="cache"):
    source("data.synthetic.cache=True")
  with pytest.raises(ConfigError, match="version 2"):
    source("data.synthetic.label=motion", "data.synthetic.num_classes=10")
  with pytest.raises(ConfigError, match="version must be"):
    source("data.synthetic.version=3")
  with pytest.raises(ConfigError, match="shared_geometry is for version 2"):
    source("data.synthetic.shared_geometry=True", version=1)


def colour_stats(video):
  """uint8 [..., T, S, S, 3] -> per-channel mean and std over the clip, [..., 6]."""
  x = video.astype(np.float32) / 255
  return np.concatenate([x.mean(axis=(-4, -3, -2)), x.std(axis=(-4, -3, -2))], -1)


def same_video_accuracy(version: int, shared_geometry: bool = False) -> float:
  """Held-out accuracy of a logistic regression telling (clip of video i, other clip of video i) from (clip of
  video i, clip of video i + 8, the same shape class) by the clips' colour statistics."""
  src = source(
    f"data.synthetic.num_train={NUM_VIDEOS + 8}",
    "data.synthetic.cache=False",
    f"data.synthetic.shared_geometry={shared_geometry}",
    version=version,
  )
  videos = examples(src, range(NUM_VIDEOS + 8), 0)
  assert (videos["label"][:NUM_VIDEOS] == videos["label"][8:]).all()
  stats = colour_stats(videos["video"])  # [N + 8, 2 clips, 6]
  same = np.abs(stats[:NUM_VIDEOS, 0] - stats[:NUM_VIDEOS, 1])
  other = np.abs(stats[:NUM_VIDEOS, 0] - stats[8:, 1])
  x = np.concatenate([same, other])
  y = np.concatenate([np.ones(NUM_VIDEOS), np.zeros(NUM_VIDEOS)])
  order = np.random.default_rng(0).permutation(len(x))
  train, test = order[: len(x) // 2], order[len(x) // 2 :]
  fit = LogisticRegression(max_iter=1000).fit(x[train], y[train])
  return fit.score(x[test], y[test])


def test_colour_tells_clips_of_one_video_apart_in_version_1_only():
  assert same_video_accuracy(1) > 0.9  # The shortcut the test looks for is there in version 1...
  # ...and gone in version 2, also where a video's clips share its geometry (their shape's size and path).
  assert same_video_accuracy(2) < 0.5 + TOLERANCE
  assert same_video_accuracy(2, shared_geometry=True) < 0.5 + TOLERANCE


def foreground(video):
  """uint8 [..., T, S, S, 3] of a plain background (the runlocal set has no texture or noise) -> bool mask of the
  pixels that differ from the frame's corner, i.e. the shape."""
  return np.abs(video.astype(np.int16) - video[..., :1, :1, :].astype(np.int16)).max(-1) > 8


@pytest.mark.parametrize("shared", [False, True])
def test_shared_geometry_keeps_a_videos_shape_path_and_redraws_only_its_colours(shared):
  src = source(f"data.synthetic.shared_geometry={shared}")
  videos = examples(src, range(16), 3)["video"]  # [16, 2 clips, T, S, S, 3], each clip the whole video
  masks = foreground(videos)
  overlap = (masks[:, 0] & masks[:, 1]).sum((1, 2, 3)) / (masks[:, 0] | masks[:, 1]).sum((1, 2, 3))
  colours = np.abs(videos[:, 0].astype(np.float32).mean((1, 2, 3)) - videos[:, 1].astype(np.float32).mean((1, 2, 3)))
  assert (colours.max(-1) > 5).all()  # Either way each clip has its own colours...
  if shared:
    assert (overlap > 0.9).all()  # ...and with shared geometry the shape covers the same pixels in both clips.
  else:
    assert np.median(overlap) < 0.5
