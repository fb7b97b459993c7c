"""Clip augmentation on the host, with the same random parameters for every frame of a clip.

Fields live in `data.augment` (defaults in `default_config()`, all off except as
recipes set them): multi-scale crop, flip, colour jitter, grayscale, Gaussian
blur. Test-time views (N temporal clips x 3 spatial crops) are `test_views`.
"""

import tensorflow as tf
from ml_collections import ConfigDict

from jvssl.data import clip_augment, sampling
from jvssl.errors import ConfigError


def default_config() -> ConfigDict:
  """data.augment's fields and defaults (every augmentation off)."""
  return ConfigDict(
    {
      "random_crop_scale": (1.0, 1.0),  # Area fraction range of the random resized crop; (1, 1): centre crop.
      # Instead of it, TSN's GroupMultiScaleCrop (VideoMAE pretraining: (1, .875, .75, .66)): crop sides are
      # these fractions of the short side, height and width at most one step apart, at one of 13 fixed places.
      "multi_scale_crop": (),
      "flip": False,  # Random horizontal flip (off for SSv2, whose labels say left and right).
      # Colour jitter strengths (SimCLR / CVRL style): brightness, contrast, saturation, hue; applied with
      # probability color_jitter_prob.
      "color_jitter": (0.0, 0.0, 0.0, 0.0),
      "color_jitter_prob": 0.8,
      "grayscale_prob": 0.0,
      "blur_prob": 0.0,  # Gaussian blur with sigma drawn from blur_sigma (in pixels of the output size).
      "blur_sigma": (0.1, 2.0),
      **clip_augment.default_config(),  # RandAugment, random erasing, repeats.
    }
  )


def options(augment_config) -> ConfigDict:
  """data.augment completed with the defaults of fields it lacks (configs written before they existed)."""
  out = default_config()
  out.update(augment_config)
  return out


def train_augment(video, seed, data_config):
  """video: uint8 [..., T, H, W, 3] -> uint8 [..., T, S, S, 3], S = data.image_size.

  Leading axes (several clips of one video) get independent crops.
  """
  cfg = options(data_config.augment)
  size = data_config.image_size
  if video.shape.rank == 5:
    clips = tf.unstack(video)
    return tf.stack([train_augment(c, seed + 7 * (i + 1), data_config) for i, c in enumerate(clips)])
  low, high = cfg.random_crop_scale
  flip = cfg.flip and tf.random.stateless_uniform([], seed + 3) < 0.5
  if cfg.multi_scale_crop:
    if (low, high) != (1.0, 1.0):
      raise ConfigError("set data.augment.multi_scale_crop or data.augment.random_crop_scale, not both")
    video = multi_scale_crop(video, seed, cfg.multi_scale_crop, size, flip)
  elif (low, high) != (1.0, 1.0):
    video = random_resized_crop(video, seed, (low, high), size, flip)
  else:
    video = eval_transform(video, data_config)
    if cfg.flip:
      video = tf.cond(flip, lambda: tf.reverse(video, axis=[2]), lambda: video)
  return clip_augment.apply(photometric(video, seed + 10, cfg), seed + 20, cfg, data_config)


def photometric(video, seed, cfg):
  """Colour jitter, grayscale and blur of uint8 [T, H, W, 3], one draw of parameters per clip."""
  jitter = any(cfg.color_jitter) and cfg.color_jitter_prob > 0
  if not (jitter or cfg.grayscale_prob > 0 or cfg.blur_prob > 0):
    return video
  x = tf.cast(video, tf.float32) / 255.0
  if jitter:
    x = _maybe(seed, cfg.color_jitter_prob, lambda v: color_jitter(v, seed + 1, cfg.color_jitter), x)
  if cfg.grayscale_prob > 0:
    x = _maybe(seed + 2, cfg.grayscale_prob, lambda v: tf.tile(tf.image.rgb_to_grayscale(v), [1, 1, 1, 3]), x)
  if cfg.blur_prob > 0:
    sigma = tf.random.stateless_uniform([], seed + 3, *cfg.blur_sigma)
    x = _maybe(seed + 4, cfg.blur_prob, lambda v: gaussian_blur(v, sigma), x)
  return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


def _maybe(seed, probability: float, fn, x):
  return tf.cond(tf.random.stateless_uniform([], seed) < probability, lambda: fn(x), lambda: x)


def color_jitter(x, seed, strengths):
  """x: float [T, H, W, 3] in [0, 1]; brightness, contrast, saturation factors in 1 +- s, hue shift in +- h."""
  brightness, contrast, saturation, hue = strengths
  u = tf.random.stateless_uniform([4], seed, -1.0, 1.0)
  x = x * (1.0 + brightness * u[0])
  mean = tf.reduce_mean(tf.image.rgb_to_grayscale(x), axis=[-3, -2, -1], keepdims=True)
  x = (x - mean) * (1.0 + contrast * u[1]) + mean
  x = tf.image.adjust_saturation(tf.clip_by_value(x, 0.0, 1.0), 1.0 + saturation * u[2])
  return tf.image.adjust_hue(x, hue * u[3])


def gaussian_blur(x, sigma):
  """x: float [T, H, W, C] (H, W known); a separable Gaussian of std sigma pixels, 21 taps (fewer on tiny frames)."""
  radius = min(10, (min(x.shape[1], x.shape[2]) - 1) // 2)
  offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel = tf.exp(-0.5 * tf.square(offsets / tf.maximum(sigma, 1e-3)))
  kernel /= tf.reduce_sum(kernel)
  channels = x.shape[-1]
  x = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
  across = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
  down = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
  x = tf.nn.depthwise_conv2d(x, across, [1, 1, 1, 1], "VALID")
  return tf.nn.depthwise_conv2d(x, down, [1, 1, 1, 1], "VALID")


def three_crops(video, size: int):
  """uint8 [T, H, W, 3] -> [3, T, size, size, 3]: short side resized to size, then crops at the start,
  middle and end of the long side (the 3 spatial test views of SlowFast / VideoMAE)."""
  shape = tf.shape(video)
  scale = size / tf.cast(tf.minimum(shape[1], shape[2]), tf.float32)
  new_h = tf.maximum(tf.cast(tf.round(tf.cast(shape[1], tf.float32) * scale), tf.int32), size)
  new_w = tf.maximum(tf.cast(tf.round(tf.cast(shape[2], tf.float32) * scale), tf.int32), size)
  video = tf.cast(
    tf.round(tf.clip_by_value(tf.image.resize(tf.cast(video, tf.float32), [new_h, new_w], antialias=True), 0, 255)),
    tf.uint8,
  )
  crops = []
  for k in range(3):
    top, left = (new_h - size) * k // 2, (new_w - size) * k // 2
    crops.append(video[:, top : top + size, left : left + size])
  return tf.stack(crops)


def test_views(frames, num_clips: int, data_config):
  """All frames of a video, uint8 [N, H, W, 3] -> its num_clips x 3 test views, uint8 [num_clips * 3, T, S, S, 3].

  Windows of data.num_frames with data.frame_stride evenly spaced over the video
  (sampling.multi_view_indices), each cut into three_crops; predictions are averaged over views.
  """
  t, stride, size = data_config.num_frames, data_config.frame_stride, data_config.image_size
  indices = tf.numpy_function(
    lambda n: sampling.multi_view_indices(int(n), num_clips, t, stride), [tf.shape(frames)[0]], tf.int64, stateful=False
  )
  clips = tf.gather(frames, tf.reshape(indices, [num_clips * t]))
  clips = tf.reshape(clips, tf.concat([[num_clips, t], tf.shape(frames)[1:]], 0))
  views = tf.stack([three_crops(clips[i], size) for i in range(num_clips)])
  return tf.reshape(views, [num_clips * 3, t, size, size, 3])


def eval_transform(video, data_config):
  """Deterministic resize of the short side + centre crop to data.image_size."""
  size = data_config.image_size
  if video.shape[-3] == size and video.shape[-2] == size:
    return video
  return _resize(_center_crop_square(video), size)


def random_resized_crop(video, seed, scale, size: int, flip=False, ratio=(3 / 4, 4 / 3)):
  """A crop of random area fraction in `scale` and aspect in `ratio`, resized to size x size, mirrored if `flip`.

  uint8 [T, H, W, 3] -> uint8 [T, size, size, 3]. The crop is cut from the
  uint8 frames first, so the float work scales with the crop, not the frame.
  """
  shape = tf.shape(video)
  height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
  area = tf.random.stateless_uniform([], seed, scale[0], scale[1]) * height * width
  log_ratio = tf.random.stateless_uniform([], seed + 1, tf.math.log(ratio[0]), tf.math.log(ratio[1]))
  aspect = tf.exp(log_ratio)
  crop_h = tf.clip_by_value(tf.round(tf.sqrt(area / aspect)), 1.0, height)
  crop_w = tf.clip_by_value(tf.round(tf.sqrt(area * aspect)), 1.0, width)
  offset = tf.random.stateless_uniform([2], seed + 2)
  top = tf.cast(tf.round(offset[0] * (height - crop_h)), tf.int32)
  left = tf.cast(tf.round(offset[1] * (width - crop_w)), tf.int32)
  return _crop_resize(video, top, left, tf.cast(crop_h, tf.int32), tf.cast(crop_w, tf.int32), size, flip)


def multi_scale_crop(video, seed, scales, size: int, flip=False):
  """TSN's GroupMultiScaleCrop(size, scales) as VideoMAE pretrains with it (max_distort 1, more_fix_crop).

  uint8 [T, H, W, 3] -> uint8 [T, size, size, 3]. Crop sides are int(short side * scale), snapped to `size`
  within 3 pixels; height and width take scales at most one index apart; the crop sits at one of 13 places
  (corners, centre, edge centres, quarter points) on a grid of (frame - crop) // 4.
  """
  top, left, crop_h, crop_w = multi_scale_box(tf.shape(video)[1], tf.shape(video)[2], seed, scales, size)
  return _crop_resize(video, top, left, crop_h, crop_w, size, flip)


def multi_scale_box(height, width, seed, scales, size: int):
  """multi_scale_crop's box in a height x width frame: int32 scalars (top, left, crop height, crop width)."""
  # float64 as Python computes int(base_size * x), so the sides match the PyTorch crop to the pixel.
  sides = tf.cast(tf.cast(tf.minimum(height, width), tf.float64) * tf.constant(scales, tf.float64), tf.int32)
  sides = tf.where(tf.abs(sides - size) < 3, size, sides)
  n = len(scales)
  pairs = tf.constant([(i, j) for i in range(n) for j in range(n) if abs(i - j) <= 1], tf.int32)
  pair = pairs[tf.random.stateless_uniform([], seed, 0, len(pairs), tf.int32)]
  crop_h, crop_w = sides[pair[0]], sides[pair[1]]
  # (height, width) steps of the offset grid, as in GroupMultiScaleCrop.fill_fix_offset.
  places = tf.constant(
    [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)], tf.int32
  )
  place = places[tf.random.stateless_uniform([], seed + 1, 0, 13, tf.int32)]
  return place[0] * ((height - crop_h) // 4), place[1] * ((width - crop_w) // 4), crop_h, crop_w


def _crop_resize(video, top, left, crop_h, crop_w, size: int, flip):
  """video[:, top:top + crop_h, left:left + crop_w] resized to size x size (uint8), mirrored if `flip`."""
  crop = video[:, top : top + crop_h, left : left + crop_w]
  # Plain bilinear suffices for the usual mild downscaling; crops over twice the output size need antialiasing.
  frames = tf.cond(
    tf.minimum(crop_h, crop_w) > 2 * size,
    lambda: tf.image.resize(crop, [size, size], antialias=True),
    lambda: tf.image.resize(crop, [size, size]),
  )
  # Both filters have non-negative weights, so values stay in [0, 255]: +0.5 then truncation rounds.
  frames = tf.cast(frames + 0.5, tf.uint8)
  return tf.cond(tf.convert_to_tensor(flip), lambda: tf.reverse(frames, axis=[2]), lambda: frames)


def _center_crop_square(video):
  shape = tf.shape(video)
  side = tf.minimum(shape[-3], shape[-2])
  top, left = (shape[-3] - side) // 2, (shape[-2] - side) // 2
  return video[..., top : top + side, left : left + side, :]


def _resize(video, size):
  frames = tf.image.resize(tf.cast(video, tf.float32), [size, size], antialias=True)
  return tf.cast(tf.round(tf.clip_by_value(frames, 0, 255)), tf.uint8)
