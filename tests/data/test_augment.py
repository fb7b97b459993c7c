"""Clip augmentation: one draw of parameters per clip, defaults off, and the N x 3 test views."""

import numpy as np
import tensorflow as tf
from ml_collections import ConfigDict

from jvssl.data import augment


def data_config(**augment_fields):
  cfg = augment.default_config()
  cfg.update(augment_fields)
  return ConfigDict({"image_size": 16, "num_frames": 4, "frame_stride": 2, "augment": cfg})


def still_video(seed=0, frames=4, size=(20, 24)):
  image = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
  return tf.constant(np.repeat(image[None], frames, axis=0))


def test_defaults_leave_clips_unchanged_and_old_configs_still_work():
  video = still_video()
  assert augment.photometric(video, tf.constant([1, 2], tf.int64), augment.default_config()) is video
  old = ConfigDict({"image_size": 16, "augment": {"random_crop_scale": (1.0, 1.0), "flip": False}})
  out = augment.train_augment(video, tf.constant([1, 2], tf.int64), old)
  np.testing.assert_array_equal(out, augment.eval_transform(video, old))


def test_every_frame_of_a_clip_gets_the_same_augmentation():
  cfg = data_config(
    random_crop_scale=(0.3, 1.0),
    flip=True,
    color_jitter=(0.4, 0.4, 0.4, 0.1),
    color_jitter_prob=1.0,
    grayscale_prob=0.5,
    blur_prob=0.5,
  )
  video = still_video()
  outs = [augment.train_augment(video, tf.constant([s, 3], tf.int64), cfg).numpy() for s in range(6)]
  for out in outs:
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.uint8
    assert (out == out[:1]).all()  # Identical frames stay identical.
  assert len({o.tobytes() for o in outs}) == 6  # Different clips, different draws.
  gray = [o for o in outs if (o[..., 0] == o[..., 1]).all() and (o[..., 1] == o[..., 2]).all()]
  assert 0 < len(gray) < 6


def test_jitter_grayscale_and_blur_change_what_they_should():
  video = still_video()
  seed = tf.constant([5, 5], tf.int64)
  gray = augment.photometric(video, seed, data_config(grayscale_prob=1.0).augment).numpy()
  assert (gray[..., 0] == gray[..., 2]).all()
  blurred = augment.photometric(video, seed, data_config(blur_prob=1.0, blur_sigma=(1.5, 1.5)).augment).numpy()
  assert np.diff(blurred.astype(float), axis=2).std() < 0.5 * np.diff(video.numpy().astype(float), axis=2).std()
  jittered = augment.photometric(
    video, seed, data_config(color_jitter=(0.5, 0.5, 0.5, 0.2), color_jitter_prob=1.0).augment
  ).numpy()
  assert np.abs(jittered.astype(float) - video.numpy()).mean() > 3


def test_test_views_are_n_clips_by_three_crops():
  # Frame i has grey level i; within a frame, brightness rises from left to right.
  frames = np.arange(20, dtype=np.uint8)[:, None, None, None] * 5 + np.arange(48, dtype=np.uint8)[None, None, :, None]
  frames = np.broadcast_to(frames, (20, 16, 48, 3)).astype(np.uint8)
  views = augment.test_views(tf.constant(frames), 2, data_config()).numpy()
  assert views.shape == (6, 4, 16, 16, 3)
  left_columns = views[:, 0, 8, 0, 0].astype(int)
  # Spatial: left, middle and right crops of each window, in that order.
  assert left_columns[0] < left_columns[1] < left_columns[2] and left_columns[3] < left_columns[4] < left_columns[5]
  # Temporal: 2 windows of 4 frames with stride 2, at the start and the end of the video.
  first_frames = views[::3, :, 8, 8, 0].astype(int)
  np.testing.assert_array_equal(np.diff(first_frames, axis=1), 10)  # Stride 2 frames = 10 grey levels.
  assert first_frames[1, 0] - first_frames[0, 0] == 5 * (20 - 7)  # Second window starts at frame 13.


def test_flipped_crop_is_the_mirror_of_the_crop_on_both_resize_paths():
  for size in ((20, 24), (60, 70)):  # The second is over twice the output: the antialiased path.
    video = still_video(seed=1, size=size)
    for s in range(3):
      seed = tf.constant([s, 9], tf.int64)
      plain = augment.random_resized_crop(video, seed, (0.5, 1.0), 16, flip=False).numpy()
      mirrored = augment.random_resized_crop(video, seed, (0.5, 1.0), 16, flip=True).numpy()
      assert plain.shape == (4, 16, 16, 3)
      np.testing.assert_allclose(mirrored, plain[:, :, ::-1], atol=1)
