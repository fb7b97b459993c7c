"""Which frames of a video make a clip: pure numpy functions of (video length, seed).

Every source (video files, TFRecords, TFDS) samples through these, so the same
seed picks the same frame indices whatever the storage. Indices past the end of
a short video are clamped to its last frame: a video shorter than a clip is
padded by repeating its last frame (the documented rule for short videos).
"""

import numpy as np
from ml_collections import ConfigDict

from jvssl.errors import ConfigError

MODES = ("random", "segment")


def default_config() -> ConfigDict:
  """The sampler's fields of `config.data` that jvssl/config.py does not declare itself, with their defaults."""
  return ConfigDict(
    {
      # > 0: CVRL's temporal interval sampling. The gap t (frames) from a video's first clip to each other clip
      # is drawn with P(t) proportional to c - t^a (a = this; c makes P vanish just past the largest gap),
      # then the first clip is placed uniformly where all fit. a = 1 is CVRL's -t + c; a < 1 favours near
      # clips more, a > 1 less. 0: every clip's start is drawn independently (whose gaps also fall linearly).
      "clip_interval_power": 0.0,
    }
  )


def options(data_config) -> ConfigDict:
  """The sampler's fields from `data_config`, with the defaults of those it lacks (configs that predate them)."""
  out = default_config()
  out.update({k: data_config[k] for k in out if k in data_config})
  return out


def rng_for(seed) -> np.random.Generator:
  """A numpy generator from an int64 seed array (the pipeline's per-example seed)."""
  return np.random.default_rng([int(s) & 0xFFFFFFFFFFFFFFFF for s in np.ravel(seed)])


def clip_indices(length: int, data_config, rng: np.random.Generator | None) -> np.ndarray:
  """Frame indices int64 [K, T] (K = data.clips_per_video) into a video of `length` frames.

  rng None: deterministic (centre window / segment middles), for evaluation.
  """
  t, stride, k = data_config.num_frames, data_config.frame_stride, data_config.clips_per_video
  if data_config.sampling == "random":
    if rng is None:
      starts = [max(length - span(t, stride), 0) // 2] * k
    else:
      power = options(data_config).clip_interval_power
      starts = window_starts(length, k, t, stride, data_config.max_clip_distance, rng, power)
    out = np.stack([start + stride * np.arange(t) for start in starts])
  elif data_config.sampling == "segment":
    out = np.stack([segment_indices(length, t, rng) for _ in range(k)])
  else:
    raise ConfigError(f"data.sampling must be one of {MODES}, not {data_config.sampling!r}")
  return np.clip(out, 0, max(length - 1, 0))


def span(num_frames: int, stride: int) -> int:
  """Frames one clip covers."""
  return (num_frames - 1) * stride + 1


def window_starts(
  length: int,
  k: int,
  num_frames: int,
  stride: int,
  max_distance: int,
  rng: np.random.Generator,
  interval_power: float = 0.0,
) -> list[int]:
  """k random window starts; with max_distance > 0 all lie within max_distance frames of the first.

  Contrastive methods (rho clips per video) use max_distance to keep positives related in time.
  interval_power > 0: the gaps from the first start follow `interval_weights` (CVRL's sampling).
  """
  last = max(length - span(num_frames, stride), 0)
  if interval_power > 0:
    largest = min(last, max_distance) if max_distance > 0 else last
    weights = interval_weights(largest, interval_power)
    gaps = rng.choice(largest + 1, size=k - 1, p=weights)
    first = int(rng.integers(0, last - max(gaps, default=0) + 1))
    return [first] + [first + int(g) for g in gaps]
  first = int(rng.integers(0, last + 1))
  if max_distance <= 0:
    return [first] + [int(rng.integers(0, last + 1)) for _ in range(k - 1)]
  low, high = max(first - max_distance, 0), min(first + max_distance, last)
  return [first] + [int(rng.integers(low, high + 1)) for _ in range(k - 1)]


def interval_weights(largest: int, power: float) -> np.ndarray:
  """Probabilities float64 [largest + 1] of the gaps 0..largest: proportional to c - t^power, c = (largest + 1)^power
  (CVRL's decreasing "power function" family; power 1 falls linearly to almost nothing at the largest gap)."""
  t = np.arange(largest + 1, dtype=np.float64)
  weights = float(largest + 1) ** power - t**power
  return weights / weights.sum()


def segment_indices(length: int, num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
  """TSN sampling: the video cut into num_frames equal segments, one frame from each (its middle if rng is None)."""
  edges = np.linspace(0, length, num_frames + 1)
  if rng is None:
    picks = (edges[:-1] + edges[1:]) / 2
  else:
    picks = edges[:-1] + rng.random(num_frames) * (edges[1:] - edges[:-1])
  return np.floor(picks).astype(np.int64)


def multi_view_indices(length: int, num_clips: int, num_frames: int, stride: int) -> np.ndarray:
  """Deterministic test views: num_clips windows evenly spaced over the video, int64 [num_clips, T].

  With augment.three_crops this gives the usual N temporal x 3 spatial test views.
  """
  last = max(length - span(num_frames, stride), 0)
  starts = np.linspace(0, last, num_clips).round().astype(np.int64) if num_clips > 1 else np.array([last // 2])
  out = starts[:, None] + stride * np.arange(num_frames)[None]
  return np.clip(out, 0, max(length - 1, 0))
