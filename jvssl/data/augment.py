"""Clip augmentation on the host, with the same random parameters for every frame of a clip."""

import tensorflow as tf


def train_augment(video, seed, data_config):
  """video: uint8 [..., T, H, W, 3] -> uint8 [..., T, S, S, 3], S = data.image_size.

  Leading axes (several clips of one video) get independent crops.
  """
  cfg = data_config.augment
  size = data_config.image_size
  if video.shape.rank == 5:
    clips = tf.unstack(video)
    return tf.stack([train_augment(c, seed + 7 * (i + 1), data_config) for i, c in enumerate(clips)])
  low, high = cfg.random_crop_scale
  if (low, high) != (1.0, 1.0):
    video = random_resized_crop(video, seed, (low, high), size)
  elif video.shape[1] != size or video.shape[2] != size:
    video = eval_transform(video, data_config)
  if cfg.flip:
    flip = tf.random.stateless_uniform([], seed + 3) < 0.5
    video = tf.cond(flip, lambda: tf.reverse(video, axis=[2]), lambda: video)
  return video


def eval_transform(video, data_config):
  """Deterministic resize of the short side + centre crop to data.image_size."""
  size = data_config.image_size
  if video.shape[-3] == size and video.shape[-2] == size:
    return video
  return _resize(_center_crop_square(video), size)


def random_resized_crop(video, seed, scale, size: int, ratio=(3 / 4, 4 / 3)):
  """A crop of random area fraction in `scale` and aspect in `ratio`, resized to size x size."""
  shape = tf.shape(video)
  height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
  area = tf.random.stateless_uniform([], seed, scale[0], scale[1]) * height * width
  log_ratio = tf.random.stateless_uniform([], seed + 1, tf.math.log(ratio[0]), tf.math.log(ratio[1]))
  aspect = tf.exp(log_ratio)
  crop_h = tf.minimum(tf.sqrt(area / aspect), height)
  crop_w = tf.minimum(tf.sqrt(area * aspect), width)
  offset = tf.random.stateless_uniform([2], seed + 2)
  top = offset[0] * (height - crop_h)
  left = offset[1] * (width - crop_w)
  box = tf.stack([top / height, left / width, (top + crop_h) / height, (left + crop_w) / width])
  frames = tf.image.crop_and_resize(tf.cast(video, tf.float32), tf.tile(box[None], [shape[0], 1]),
                                    tf.range(shape[0]), [size, size])
  return tf.cast(tf.round(tf.clip_by_value(frames, 0, 255)), tf.uint8)


def _center_crop_square(video):
  shape = tf.shape(video)
  side = tf.minimum(shape[-3], shape[-2])
  top, left = (shape[-3] - side) // 2, (shape[-2] - side) // 2
  return video[..., top:top + side, left:left + side, :]


def _resize(video, size):
  frames = tf.image.resize(tf.cast(video, tf.float32), [size, size], antialias=True)
  return tf.cast(tf.round(tf.clip_by_value(frames, 0, 255)), tf.uint8)
