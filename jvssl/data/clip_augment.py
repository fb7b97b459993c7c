"""VideoMAE's fine-tuning augmentations on the host: RandAugment and random erasing, one draw per clip.

Fields live in `data.augment` beside augment.py's (defaults in `default_config()`, all off):

* RandAugment as timm's `rand-m{magnitude}-n{num_ops}-mstd{magnitude_std}-inc1`, the policy VideoMAE
  fine-tunes with (`--aa rand-m7-n4-mstd0.5-inc1`): `rand_augment_ops` ops drawn with replacement
  from the 15 "increasing" ops, each applied with probability 0.5 at a magnitude drawn around
  `rand_augment_magnitude`. VideoMAE's transform picks the ops and their arguments once and maps
  them over the frames; so does this one (statistics such as auto-contrast's range are per frame,
  as PIL computes them per image).
* Random erasing as VideoMAE's `--reprob 0.25 --remode pixel --recount 1` (its RandomErasing with
  cube=True): with probability `random_erase_prob`, 1 to `random_erase_count` boxes, each at the
  same place in every frame and filled with per-pixel Gaussian noise of the normalised image.
* `repeats`: repeated augmentation (VideoMAE's `--num_sample`), read by the training pipeline:
  each video fills `repeats` consecutive places of a batch, each with its own augmentation.

Where this differs from VideoMAE: RandAugment runs after the crop rather than on the whole
decoded frame (its cost then scales with the output), affine ops interpolate bilinearly (tf has no
bicubic image transform), and the erasing noise is rounded and clipped to uint8 pixels because
clips travel to the device as uint8 and are normalised there.
"""

import math

import tensorflow as tf

FILL = 128.0  # timm's fill colour of the pixels affine ops uncover.
OP_PROBABILITY = 0.5  # timm's per-op probability in RandAugment.
MAX_LEVEL = 10.0  # timm's magnitude scale.


def default_config() -> dict:
  """The fields this module adds to data.augment, with their defaults (every augmentation off)."""
  return {
    "rand_augment_ops": 0,  # RandAugment ops per clip; 0: off (VideoMAE: 4).
    "rand_augment_magnitude": 7.0,  # In timm's 0..10 scale (VideoMAE: 7).
    "rand_augment_magnitude_std": 0.5,  # Std of the per-op magnitude draw (VideoMAE: 0.5).
    "random_erase_prob": 0.0,  # Probability of erasing a clip (VideoMAE: 0.25).
    "random_erase_count": 1,  # Most boxes per erased clip, drawn from 1..this (VideoMAE: 1).
    "repeats": 1,  # Augmented copies of each video per batch, in consecutive places (VideoMAE: 2).
  }


def apply(video, seed, cfg, data_config):
  """RandAugment then random erasing of a uint8 clip [T, H, W, 3], as cfg (a completed data.augment) says.

  seed: int64 [2]. data_config: its mean and std give the erasing noise's distribution.
  """
  if cfg.rand_augment_ops > 0:
    video = rand_augment(
      video,
      tf.random.experimental.stateless_fold_in(seed, 1),
      cfg.rand_augment_ops,
      cfg.rand_augment_magnitude,
      cfg.rand_augment_magnitude_std,
    )
  if cfg.random_erase_prob > 0:
    erase_seed = tf.random.experimental.stateless_fold_in(seed, 2)
    video = random_erase(video, erase_seed, cfg.random_erase_prob, cfg.random_erase_count, data_config)
  return video


# ---- RandAugment ---------------------------------------------------------------------------------
# Each op: (x float32 [T, H, W, 3] holding uint8 values, level = magnitude / 10 in [0, 1], sign +-1) -> same.
# The arguments follow timm's *_level_to_arg functions of the "increasing" ops; outputs are whole
# numbers in 0..255, rounded as PIL rounds, so a chain of ops sees what PIL's would.


def _gray(x):
  """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 2^15) >> 16, [T, H, W, 1]."""
  rgb = tf.cast(x, tf.int32)
  weighted = rgb[..., 0:1] * 19595 + rgb[..., 1:2] * 38470 + rgb[..., 2:3] * 7471 + 32768
  return tf.cast(weighted // 65536, tf.float32)


def _blend(degenerate, x, factor):
  """PIL's Image.blend(degenerate, x, factor): truncated towards zero, clipped to 0..255."""
  return tf.clip_by_value(tf.math.floor(degenerate + factor * (x - degenerate)), 0.0, 255.0)


def _enhance_factor(level, sign):
  return 1.0 + sign * level * 0.9


def auto_contrast(x, level, sign):
  del level, sign
  low = tf.reduce_min(x, axis=[1, 2], keepdims=True)
  high = tf.reduce_max(x, axis=[1, 2], keepdims=True)
  scale = 255.0 / tf.maximum(high - low, 1.0)
  return tf.where(high > low, tf.clip_by_value(tf.math.floor((x - low) * scale), 0.0, 255.0), x)


def equalize(x, level, sign):
  """PIL's ImageOps.equalize, per frame and channel."""
  del level, sign
  t, h, w, c = tf.unstack(tf.shape(x))
  flat = tf.reshape(tf.transpose(tf.cast(x, tf.int32), [0, 3, 1, 2]), [t * c, h * w])
  hist = tf.math.bincount(flat, minlength=256, maxlength=256, axis=-1)
  last_bin = 255 - tf.argmax(tf.reverse(tf.cast(hist > 0, tf.int32), axis=[1]), axis=1, output_type=tf.int32)
  last = tf.gather(hist, last_bin, batch_dims=1)
  step = (tf.reduce_sum(hist, axis=1) - last) // 256
  lut = (step[:, None] // 2 + tf.cumsum(hist, axis=1, exclusive=True)) // tf.maximum(step[:, None], 1)
  lut = tf.where(step[:, None] > 0, tf.minimum(lut, 255), tf.range(256)[None])
  out = tf.gather(lut, flat, batch_dims=1)
  return tf.transpose(tf.reshape(tf.cast(out, tf.float32), [t, c, h, w]), [0, 2, 3, 1])


def invert(x, level, sign):
  del level, sign
  return 255.0 - x


def posterize(x, level, sign):
  del sign
  shift = 8.0 - (4.0 - tf.math.floor(level * 4.0))  # Keeps 4 - int(4 * level) bits.
  unit = tf.pow(2.0, shift)
  return tf.math.floor(x / unit) * unit


def solarize(x, level, sign):
  del sign
  threshold = 256.0 - tf.math.floor(level * 256.0)
  return tf.where(x < threshold, x, 255.0 - x)


def solarize_add(x, level, sign):
  del sign
  return tf.where(x < 128.0, tf.minimum(x + tf.math.floor(level * 110.0), 255.0), x)


def color(x, level, sign):
  return _blend(_gray(x), x, _enhance_factor(level, sign))


def contrast(x, level, sign):
  mean = tf.math.floor(tf.reduce_mean(_gray(x), axis=[1, 2, 3], keepdims=True) + 0.5)
  return _blend(mean, x, _enhance_factor(level, sign))


def brightness(x, level, sign):
  return _blend(tf.zeros_like(x), x, _enhance_factor(level, sign))


def sharpness(x, level, sign):
  """Blend with PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13), which keeps the border pixels."""
  kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.round(tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME"))
  h, w = tf.shape(x)[1], tf.shape(x)[2]
  interior = tf.pad(tf.ones([h - 2, w - 2], tf.bool), [[1, 1], [1, 1]], constant_values=False)
  smooth = tf.where(interior[None, :, :, None], smooth, x)
  return _blend(smooth, x, _enhance_factor(level, sign))


def _size(x, axis: int):
  return tf.cast(tf.shape(x)[axis], tf.float32)


def _affine(x, a, b, c, d, e, f):
  """PIL's Image.transform(AFFINE, (a, b, c, d, e, f)): output pixel (x, y) reads the input at
  (a x + b y + c, d x + e y + f), pixel centres at +0.5; uncovered pixels get FILL."""
  # tf's transform reads at integer pixel indices: move PIL's half-pixel centres into its coefficients.
  matrix = tf.stack([a, b, c + 0.5 * (a + b - 1.0), d, e, f + 0.5 * (d + e - 1.0), 0.0, 0.0])
  out = tf.raw_ops.ImageProjectiveTransformV3(
    images=x,
    transforms=tf.cast(matrix[None], tf.float32),
    output_shape=tf.shape(x)[1:3],
    fill_value=FILL,
    interpolation="BILINEAR",
    fill_mode="CONSTANT",
  )
  return tf.clip_by_value(tf.round(out), 0.0, 255.0)


def rotate(x, level, sign):
  """PIL's Image.rotate(degrees) about the centre, degrees = +-30 level (counter-clockwise when positive)."""
  angle = -sign * level * 30.0 * math.pi / 180.0
  cos, sin = tf.cos(angle), tf.sin(angle)
  cx, cy = _size(x, 2) / 2.0, _size(x, 1) / 2.0
  return _affine(x, cos, sin, -cos * cx - sin * cy + cx, -sin, cos, sin * cx - cos * cy + cy)


def shear_x(x, level, sign):
  return _affine(x, 1.0, sign * level * 0.3, 0.0, 0.0, 1.0, 0.0)


def shear_y(x, level, sign):
  return _affine(x, 1.0, 0.0, 0.0, sign * level * 0.3, 1.0, 0.0)


def translate_x(x, level, sign):
  return _affine(x, 1.0, 0.0, sign * level * 0.45 * _size(x, 2), 0.0, 1.0, 0.0)


def translate_y(x, level, sign):
  return _affine(x, 1.0, 0.0, 0.0, 0.0, 1.0, sign * level * 0.45 * _size(x, 1))


# timm's _RAND_INCREASING_TRANSFORMS, in its order.
OPS = (
  auto_contrast,
  equalize,
  invert,
  rotate,
  posterize,
  solarize,
  solarize_add,
  color,
  contrast,
  brightness,
  sharpness,
  shear_x,
  shear_y,
  translate_x,
  translate_y,
)


def apply_op(video, op, level, sign):
  """One RandAugment op (index into OPS, int32 scalar) on a uint8 clip [T, H, W, 3]."""
  x = tf.cast(video, tf.float32)
  out = tf.switch_case(op, [lambda fn=fn: fn(x, level, sign) for fn in OPS])
  out.set_shape(video.shape)  # Every op keeps the shape; the affine ops' kernel does not say so.
  return tf.cast(out, tf.uint8)


def rand_augment(video, seed, num_ops: int, magnitude: float, magnitude_std: float):
  """uint8 [T, H, W, 3] -> the same after num_ops random ops, each op and its arguments shared by all frames.

  seed: int64 [2]. Ops are drawn with replacement, skipped with probability 1 - OP_PROBABILITY;
  magnitudes ~ N(magnitude, magnitude_std) clipped to 0..10; signed arguments negated with probability 1/2.
  """
  ops = tf.random.stateless_uniform([num_ops], seed, 0, len(OPS), tf.int32)
  draws = tf.random.stateless_uniform([num_ops, 2], seed + 1)
  noise = tf.random.stateless_normal([num_ops], seed + 2)
  levels = tf.clip_by_value(magnitude + magnitude_std * noise, 0.0, MAX_LEVEL) / MAX_LEVEL
  signs = tf.where(draws[:, 1] < 0.5, 1.0, -1.0)
  for i in range(num_ops):
    video = _maybe_op(video, draws[i, 0] < OP_PROBABILITY, ops[i], levels[i], signs[i])
  return video


def _maybe_op(video, applied, op, level, sign):
  return tf.cond(applied, lambda: apply_op(video, op, level, sign), lambda: video)


# ---- Random erasing ------------------------------------------------------------------------------

ERASE_AREA = (0.02, 1 / 3)  # Fraction of the frame per erasing (split over the boxes).
ERASE_ASPECT = (0.3, 1 / 0.3)  # Box height / width, drawn log-uniformly.
ERASE_TRIES = 100  # Boxes drawn until one fits, as VideoMAE's cube erasing tries.


def erase_box(seed, height, width, count):
  """One box (top, left, box height, box width) as VideoMAE draws it, and whether one fitted in the tries.

  height, width, count: int32 scalars. Returns int32 scalars and a bool scalar.
  """
  frame_area = tf.cast(height * width, tf.float32)
  area = tf.random.stateless_uniform([ERASE_TRIES], seed, *ERASE_AREA) * frame_area / tf.cast(count, tf.float32)
  log_ratio = (math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1]))
  aspect = tf.exp(tf.random.stateless_uniform([ERASE_TRIES], seed + 1, *log_ratio))
  box_h = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
  box_w = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
  fits = (box_w < width) & (box_h < height)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
  box_h, box_w = box_h[first], box_w[first]
  u = tf.random.stateless_uniform([2], seed + 2)
  top = tf.minimum(tf.cast(u[0] * tf.cast(height - box_h + 1, tf.float32), tf.int32), height - box_h)
  left = tf.minimum(tf.cast(u[1] * tf.cast(width - box_w + 1, tf.float32), tf.int32), width - box_w)
  return (top, left, box_h, box_w), tf.reduce_any(fits)


def random_erase(video, seed, probability: float, max_count: int, data_config):
  """uint8 [T, H, W, 3] -> with `probability`, 1..max_count boxes erased at the same place in every frame.

  A box's pixels become mean + std * N(0, 1) (data.mean / data.std, drawn per pixel and frame), the
  noise VideoMAE's "pixel" mode writes into the normalised clip, here rounded to uint8.
  """
  height, width = tf.shape(video)[1], tf.shape(video)[2]
  count = tf.random.stateless_uniform([], seed + 1, 1, max_count + 1, tf.int32)
  mean = tf.constant(data_config.mean, tf.float32) * 255.0
  std = tf.constant(data_config.std, tf.float32) * 255.0
  rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
  mask = tf.zeros([height, width], tf.bool)
  for i in range(max_count):
    (top, left, box_h, box_w), fitted = erase_box(seed + 4 * (i + 1), height, width, count)
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
    mask |= inside & fitted & (i < count)

  def erase():
    noise = mean + std * tf.random.stateless_normal(tf.shape(video), seed + 2)
    noise = tf.cast(tf.clip_by_value(tf.round(noise), 0.0, 255.0), tf.uint8)
    return tf.where(mask[None, :, :, None], noise, video)

  return tf.cond(tf.random.stateless_uniform([], seed) < probability, erase, lambda: video)
