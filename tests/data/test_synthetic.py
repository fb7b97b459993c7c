"""The embedded synthetic data set: a pure function of (seed, split, index), cached or not."""

import numpy as np
import pytest
import tensorflow as tf

from jvssl import config as config_lib
from jvssl.data import pipeline, synthetic
from jvssl.errors import ConfigError


def data_config(*overrides):
  return config_lib.load("configs/videomae_synthetic.py:runlocal", list(overrides)).data


def clip(source, index, seed=(1, 2)):
  example = source.load(tf.constant(index, tf.int64), tf.constant(seed, tf.int64))
  return example["video"].numpy(), int(example["label"])


def test_same_index_same_video_and_splits_differ():
  train = pipeline.make_source(data_config(), "train")
  a, label_a = clip(train, 5)
  b, label_b = clip(train, 5)
  np.testing.assert_array_equal(a, b)
  assert label_a == label_b == 5 % train.num_classes
  assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
  test_video, _ = clip(pipeline.make_source(data_config(), "test"), 5)
  assert not np.array_equal(a, test_video)


def test_cache_gives_the_same_clips_as_rendering():
  overrides = ("data.synthetic.video_length=12", "data.clips_per_video=2")
  plain = pipeline.make_source(data_config(*overrides, "data.synthetic.cache=False"), "train")
  cached = pipeline.make_source(data_config(*overrides, "data.synthetic.cache=True"), "train")
  for index, seed in [(0, (3, 4)), (17, (5, 6)), (63, (7, 8))]:
    (a, la), (b, lb) = clip(plain, index, seed), clip(cached, index, seed)
    np.testing.assert_array_equal(a, b)
    assert la == lb
  # Inside tf.data too: the cached videos are captured by the traced function.
  ds = tf.data.Dataset.range(4).map(lambda i: cached.load(i, tf.stack([i, i]))["video"])
  for i, video in enumerate(ds.as_numpy_iterator()):
    np.testing.assert_array_equal(video, clip(plain, i, (i, i))[0])
  key = next(k for k in synthetic._RENDERED if k[1] == 12)
  assert synthetic._RENDERED[key].shape == (64, 12, 32, 32, 3)


def test_motion_labels_and_bad_settings():
  source = pipeline.make_source(data_config("data.synthetic.label=motion", "data.synthetic.num_classes=4"), "train")
  assert [clip(source, i)[1] for i in range(6)] == [0, 1, 2, 3, 0, 1]
  with pytest.raises(ConfigError, match="num_classes"):
    pipeline.make_source(data_config("data.synthetic.num_classes=99"), "train")
  with pytest.raises(ConfigError, match="shorter than one clip"):
    pipeline.make_source(data_config("data.synthetic.video_length=2"), "train")
