"""A procedurally generated video data set that ships with jvssl, so everything runs offline.

Each video shows one textured shape moving over a textured, noisy background.
Two labellings of the same kind of video are offered (`synthetic.label`):
  "shape": the class is the shape (disk, square, ..., 8 kinds); its motion,
    colours, stripes, size, speed, start position and background are nuisances.
    This is the demo's task: a masked autoencoder must model shapes to fill in
    masked tubes, so pretraining pays off when labels are few.
  "motion": the class is the shape's motion (a direction of travel, a sense of
    rotation, growing or shrinking). No single frame tells it: a model has to
    relate frames, a harder test of temporal modelling.

Two versions (`synthetic.version`):
  1: each video draws its colours, background, size, speed, start position and
    angle once, and its clips are windows of it. Two clips of one video share
    all of these, so a contrastive method can match them by colour alone.
  2: the index fixes only the shape (index % num_classes) and the motion
    ((index // num_classes) % num_classes), the same whichever is the label, so
    one pretrained model is evaluated on both labellings of the same videos.
    Everything else (colours, background, size, exact speed, position, angle)
    is drawn afresh for every clip sampled: two clips of one video have in
    common only what two videos of the same shape and motion have. Shapes start
    near upright (`tilt`) so a frame's rotation shows, and lie lighter or
    darker than the background (`contrast`) so grey views keep the outline.
    With `shared_geometry` a video's clips keep its shape's size, path, speed,
    angle and stripes and redraw only colours, background and noise: what clips
    of one real scene share, and what contrastive methods need to match them.

Rendering is written in TensorFlow ops so it runs inside tf.data like any real
source. Which frames make a clip is drawn by `jvssl/data/sampling.py`, as for
every source. Everything about example `i` follows from (seed, split, i) and,
in version 2, the example's seed: the same index and seed always give the same
clip, on any host, in any order.
"""

import json
import logging
import math
import time

import numpy as np
import tensorflow as tf
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import audio, captions, sampling
from jvssl.errors import ConfigError

# (dx, dy, rotation sense, zoom sense) per class; the first `num_classes` are used.
MOTIONS = (
  ("right", (1, 0, 0, 0)),
  ("left", (-1, 0, 0, 0)),
  ("down", (0, 1, 0, 0)),
  ("up", (0, -1, 0, 0)),
  ("rotate_cw", (0, 0, 1, 0)),
  ("rotate_ccw", (0, 0, -1, 0)),
  ("grow", (0, 0, 0, 1)),
  ("shrink", (0, 0, 0, -1)),
  ("down_right", (0.7071, 0.7071, 0, 0)),
  ("up_left", (-0.7071, -0.7071, 0, 0)),
)
SHAPES = ("disk", "square", "triangle", "cross", "ring", "bar", "star", "crescent")
CLASS_NAMES = {"motion": tuple(name for name, _ in MOTIONS), "shape": SHAPES}
_SPLIT_SALT = {"train": 0, "test": 1, "val": 2}
_RENDERED: dict = {}  # (split, length, size, config) -> uint8 [N, T, S, S, 3], see SyntheticSource.rendered.
log = logging.getLogger("jvssl")


@registry.SOURCES.register("synthetic")
class SyntheticSource:
  """Moving-shape videos. `load(index, seed)` -> {"video": uint8 [T, S, S, 3] or [K, T, S, S, 3], "label",
  "caption": tf.string [num_captions]}, and with data.audio.enabled the clips' soundtrack "audio" (float32
  [samples] or [K, samples], jvssl/data/audio.py) and "has_audio"."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "version": 1,  # 1: appearance drawn per video; 2: per clip sampled (see the module docstring).
        "label": "shape",  # What the class is: "shape" or "motion" (see the module docstring).
        # The first N shapes or motions. Version 1: the other attribute varies over all of its kinds;
        # version 2: over its first N kinds too.
        "num_classes": 8,
        "num_train": 8192,
        "num_test": 1024,
        "seed": 1234,  # The data set's own seed: which videos exist, not their order.
        # Frames in the whole video; 0: exactly one clip of num_frames * frame_stride.
        "video_length": 0,
        "travel": (0.25, 0.45),  # Distance travelled over the video, in image widths.
        "turn": (0.5 * math.pi, math.pi),  # Rotation over the video, in radians.
        "zoom": (0.45, 0.75),  # |log| of the size change over the video.
        "radius": (0.15, 0.25),  # Shape radius, in image widths.
        "background_texture": 0.15,  # Amplitude of the static background pattern.
        "background_frequency": (1.0, 3.0),  # Cycles per image width of its gratings.
        "pixel_noise": 0.02,  # Std of fresh per-frame pixel noise.
        "tilt": 0.4,  # Version 2: the starting angle is uniform in +-tilt radians (version 1: any angle).
        # Version 2: how far each channel of the shape's two colours lies from the background's, all lighter
        # or all darker.
        "contrast": (0.2, 0.5),
        # Version 2: a video's clips share its geometry (size, path, speed, angle, stripes) and draw only their
        # colours, background and noise afresh, as clips of one real scene share its objects but not its lighting.
        "shared_geometry": False,
        # Render each split once and keep it in memory (num_examples * video_length * size^2 * 3 bytes):
        # rendering costs as much CPU as a small model's step, and a run sees each video many times.
        "cache": False,
        # Captions per video written from its shape and motion (jvssl/data/captions.py), as "caption"
        # tf.string [N]; training draws one per clip (or data.text.num_captions), evaluation reads the first.
        "num_captions": 4,
      }
    )

  def __init__(self, data_config, split: str):
    self.cfg = data_config.synthetic
    if self.cfg.label not in CLASS_NAMES:
      raise ConfigError(f"synthetic.label must be one of {sorted(CLASS_NAMES)}, not {self.cfg.label!r}")
    kinds = len(CLASS_NAMES[self.cfg.label])
    if not 1 <= self.cfg.num_classes <= kinds:
      raise ConfigError(
        f"synthetic.num_classes must be in 1..{kinds} for label '{self.cfg.label}', got {self.cfg.num_classes}"
      )
    if self.cfg.version not in (1, 2):
      raise ConfigError(f"synthetic.version must be 1 or 2, not {self.cfg.version!r}")
    if self.cfg.version == 1 and self.cfg.shared_geometry:
      raise ConfigError("synthetic.shared_geometry is for version 2; in version 1 a video's clips share everything")
    if self.cfg.version == 2:
      kinds = min(len(SHAPES), len(MOTIONS))
      if self.cfg.num_classes > kinds:
        raise ConfigError(f"synthetic.num_classes must be in 1..{kinds} for version 2, got {self.cfg.num_classes}")
      if self.cfg.cache:
        raise ConfigError(
          "synthetic.cache keeps each video as first rendered, but version 2 draws every clip afresh: "
          "set synthetic.cache=False"
        )
    if split not in _SPLIT_SALT:
      raise ConfigError(f"synthetic split must be one of {list(_SPLIT_SALT)}, not {split!r}")
    self.split = split
    self.data = data_config
    self.num_frames = data_config.num_frames
    self.frame_stride = data_config.frame_stride
    self.clips_per_video = data_config.clips_per_video
    self.image_size = data_config.image_size
    self.num_examples = self.cfg.num_train if split == "train" else self.cfg.num_test
    self.num_classes = self.cfg.num_classes
    span = (self.num_frames - 1) * self.frame_stride + 1
    self.video_length = self.cfg.video_length or span
    if self.video_length < span:
      raise ConfigError(f"synthetic.video_length {self.video_length} is shorter than one clip ({span} frames)")

  @property
  def class_names(self) -> list[str]:
    """What each class is called in words (zero-shot prompts): a shape, or a motion phrase."""
    return captions.class_phrases(self.cfg.label, self.num_classes)

  def label(self, index):
    shape_id, motion_id = self.kinds(index)
    return shape_id if self.cfg.label == "shape" else motion_id

  def kinds(self, index) -> tuple[tf.Tensor, tf.Tensor]:
    """(shape_id, motion_id) of video `index`, int32 scalars."""
    n = self.num_classes
    if self.cfg.version == 2:
      return tf.cast(index % n, tf.int32), tf.cast(index // n % n, tf.int32)
    # The attribute that is not the label is drawn from all its kinds, independently of the label.
    other = tf.random.stateless_uniform([], self._video_seed(index) + 997, 0, 1 << 30, tf.int32)
    if self.cfg.label == "shape":
      return tf.cast(index % n, tf.int32), other % len(MOTIONS)
    return other % len(SHAPES), tf.cast(index % n, tf.int32)

  def _video_seed(self, index) -> tf.Tensor:
    return tf.stack([tf.constant(self.cfg.seed + 7919 * _SPLIT_SALT[self.split], tf.int64), index])

  def video(self, index) -> tf.Tensor:
    """The whole video `index`: uint8 [video_length, S, S, 3], a function of (data set seed, split, index).

    In version 2 this is one draw of its appearance; `load` draws one for every clip."""
    shape_id, motion_id = self.kinds(index)
    times = tf.linspace(0.0, 1.0, self.video_length)
    return render(self._video_seed(index), motion_id, shape_id, times, self.image_size, self.cfg)

  def rendered(self) -> tf.Tensor:
    """Every video of the split, uint8 [N, video_length, S, S, 3], rendered once per process and kept."""
    key = (self.split, self.video_length, self.image_size, json.dumps(self.cfg.to_dict(), sort_keys=True))
    if key not in _RENDERED:
      start = time.time()
      ds = tf.data.Dataset.range(self.num_examples).map(self.video, num_parallel_calls=tf.data.AUTOTUNE)
      _RENDERED[key] = tf.constant(np.concatenate(list(ds.batch(256).as_numpy_iterator())))
      log.info("rendered %d synthetic %s videos in %.1f s", self.num_examples, self.split, time.time() - start)
    return _RENDERED[key]

  def load(self, index, seed):
    """index: int64 scalar; seed: int64 [2] for this example's random choices (clip positions; in version 2
    also every clip's appearance)."""
    shape_id, motion_id = self.kinds(index)
    indices = tf.numpy_function(
      lambda s: sampling.clip_indices(self.video_length, self.data, sampling.rng_for(s)),
      [seed],
      tf.int64,
      stateful=False,
    )
    indices.set_shape([self.clips_per_video, self.num_frames])
    # Each clip's frames' times in the video, 0 (first frame) to 1 (last).
    times = [tf.cast(indices[k], tf.float32) / max(self.video_length - 1, 1) for k in range(self.clips_per_video)]
    if self.cfg.version == 2:
      # A fresh appearance per clip, hashed from the video and the example's seed; the clip's sound draws from it.
      clip_seeds = [
        tf.random.stateless_uniform(
          [2], self._video_seed(index) + seed * 31 + k, minval=None, maxval=None, dtype=tf.int64
        )
        for k in range(self.clips_per_video)
      ]
      # With shared_geometry one seed per video draws the geometry; the clip's own seed always draws its colours.
      geometry_seeds = [self._video_seed(index) + 333] * len(clip_seeds) if self.cfg.shared_geometry else clip_seeds
      clips = tf.stack(
        [
          render(g, motion_id, shape_id, t, self.image_size, self.cfg, colour_seed=s)
          for g, s, t in zip(geometry_seeds, clip_seeds, times)
        ]
      )
    else:
      # One appearance per video, and its soundtrack drawn once too, like its colours.
      clip_seeds = [self._video_seed(index) + 777] * self.clips_per_video
      if self.cfg.cache:
        with tf.init_scope():  # Render eagerly, outside the tf.data function being traced.
          videos = self.rendered()
        video = tf.gather(videos, index)
      else:
        video = self.video(index)
      clips = tf.gather(video, indices)
    if self.clips_per_video == 1:
      clips = clips[0]
    example = {"video": clips, "label": shape_id if self.cfg.label == "shape" else motion_id}
    if self.data.audio.enabled:
      num_samples = audio.num_samples(self.data.audio)
      rate = self.data.audio.sample_rate
      sounds = [audio.synthetic_audio(shape_id, motion_id, t, rate, s, num_samples) for s, t in zip(clip_seeds, times)]
      example["audio"] = sounds[0] if self.clips_per_video == 1 else tf.stack(sounds)
      example["has_audio"] = tf.constant(1, tf.int32)
    if self.cfg.num_captions:
      seed = self._video_seed(index) + 555
      example["caption"] = captions.synthetic_captions(shape_id, motion_id, seed, self.cfg.num_captions)
    return example


def render(seed, motion_id, shape_id, times, size: int, cfg, colour_seed=None) -> tf.Tensor:
  """Renders frames of one video: uint8 [T, size, size, 3]. seed: int64 [2] (its appearance); motion_id,
  shape_id: int32 scalars; times: float [T], each frame's time in the video, 0 (first frame) to 1 (last).
  colour_seed: int64 [2], if given, draws the colours, background and noise instead of `seed`, which then
  draws only the geometry (size, path, speed, angle, stripes)."""
  draws = iter(range(1, 64))
  colour_seed = seed if colour_seed is None else colour_seed

  def uniform(shape=(), low=0.0, high=1.0, base=None):
    # Nearby seeds give independent streams: stateless RNGs hash their seed.
    return tf.random.stateless_uniform(shape, (seed if base is None else base) + next(draws), low, high)

  def colour_uniform(shape=(), low=0.0, high=1.0):
    return uniform(shape, low, high, base=colour_seed)

  motion = tf.gather(tf.constant([m for _, m in MOTIONS], tf.float32), motion_id)
  direction, rotation, zoom_sense = motion[:2], motion[2], motion[3]

  t = times[:, None, None]  # [T, 1, 1]
  radius0 = uniform((), *cfg.radius)
  travel = uniform((), *cfg.travel) * tf.reduce_max(tf.abs(direction))
  zoom = uniform((), *cfg.zoom) * zoom_sense
  # The largest the shape gets, so the whole path stays inside the frame.
  reach = radius0 * tf.exp(tf.maximum(zoom, 0.0)) * 1.2
  unit = direction / tf.maximum(tf.norm(direction), 1e-6)
  displacement = unit * travel
  low = reach - tf.minimum(displacement, 0.0)
  high = 1.0 - reach - tf.maximum(displacement, 0.0)
  start = low + uniform([2]) * tf.maximum(high - low, 0.0)
  cx = start[0] + displacement[0] * t
  cy = start[1] + displacement[1] * t
  start_angle = uniform((), 0.0, 2 * math.pi) if cfg.version == 1 else uniform((), -cfg.tilt, cfg.tilt)
  angle = start_angle + rotation * uniform((), *cfg.turn) * t
  radius = radius0 * tf.exp(zoom * t)

  coords = (tf.range(size, dtype=tf.float32) + 0.5) / size
  x, y = coords[None, None, :], coords[None, :, None]
  cos, sin = tf.cos(angle), tf.sin(angle)
  # Pixel positions in the shape's own frame, in units of its radius.
  u = ((x - cx) * cos + (y - cy) * sin) / radius
  v = (-(x - cx) * sin + (y - cy) * cos) / radius

  radial = lambda: tf.sqrt(u * u + v * v)
  # Signed "inside-ness" of each shape, about 1 - distance from the centre in radii; only the one drawn is computed.
  triangle = lambda: tf.reduce_min(
    tf.stack(
      [
        0.5 - (u * math.cos(a) + v * math.sin(a))
        for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)
      ]
    ),
    axis=0,
  )
  inside = tf.switch_case(
    shape_id,
    [
      lambda: 1.0 - radial(),  # disk
      lambda: 0.8 - tf.maximum(tf.abs(u), tf.abs(v)),  # square
      triangle,
      lambda: tf.maximum(
        tf.minimum(0.9 - tf.abs(u), 0.35 - tf.abs(v)), tf.minimum(0.35 - tf.abs(u), 0.9 - tf.abs(v))
      ),  # cross
      lambda: tf.minimum(1.0 - radial(), radial() - 0.55),  # ring
      lambda: tf.minimum(1.0 - tf.abs(u), 0.35 - tf.abs(v)),  # bar
      lambda: 0.75 + 0.3 * tf.cos(5.0 * tf.atan2(v, u)) - radial(),  # star
      lambda: tf.minimum(1.0 - radial(), tf.sqrt((u - 0.55) ** 2 + v * v) - 0.75),  # crescent
    ],
  )
  # Soft edge about one pixel wide, so motion below a pixel still shows.
  mask = tf.sigmoid(inside * radius * size * 2.0)[..., None]

  # Stripes fixed to the shape make rotation of round shapes visible.
  stripes = 0.5 + 0.5 * tf.sin(u * uniform((), 2.0, 5.0) + uniform((), 0.0, 2 * math.pi))[..., None]
  if cfg.version == 1:
    colour_a, colour_b = colour_uniform([3]), colour_uniform([3])
  else:
    plain = colour_uniform([3], 0.1, 0.9)
    lighter = tf.where(tf.reduce_mean(plain) < 0.5, 1.0, -1.0)
    colour_a = tf.clip_by_value(plain + lighter * colour_uniform([3], *cfg.contrast), 0.0, 1.0)
    colour_b = tf.clip_by_value(plain + lighter * colour_uniform([3], *cfg.contrast), 0.0, 1.0)
  shape_rgb = colour_a * stripes + colour_b * (1.0 - stripes)

  pattern = tf.zeros([size, size], tf.float32)
  for _ in range(3):
    theta = colour_uniform((), 0.0, math.pi)
    freq = colour_uniform((), *cfg.background_frequency) * 2 * math.pi
    pattern += tf.sin(freq * (x[0] * tf.cos(theta) + y[0] * tf.sin(theta)) + colour_uniform((), 0.0, 2 * math.pi))
  if cfg.version == 1:
    plain = colour_uniform([3], 0.15, 0.85)
  background = plain + cfg.background_texture * pattern[..., None] / 3.0 * colour_uniform([3], 0.5, 1.5)
  frames = background[None] * (1.0 - mask) + shape_rgb * mask
  if cfg.pixel_noise:
    frames += cfg.pixel_noise * tf.random.stateless_normal(tf.shape(frames), colour_seed + 101)
  return tf.cast(tf.round(tf.clip_by_value(frames, 0.0, 1.0) * 255.0), tf.uint8)
