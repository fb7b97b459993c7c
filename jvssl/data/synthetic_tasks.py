"""Synthetic videos for the tasks beyond classification: a shape whose motion changes within the video, with a
motion label for every frame (temporal action segmentation, transition points); videos that all go through the
same motions in the same order, with a phase label for every frame (video alignment); and near-duplicates of
such videos (re-encoded, cropped, re-timed) among distractors (near-duplicate retrieval).

Like `jvssl.data.synthetic`, everything about video `i` follows from (seed, split, i), and the motions are that
module's `MOTIONS` (right, left, down, up, rotate_cw, rotate_ccw, grow, shrink, ...). Each video is one shape on
a plain background; it moves by one motion for a segment of frames, then by another, and so on. Positions wrap
around the frame (the shape leaves on one side and comes back on the other), so a translation can last any
number of frames without its label lying; growing and shrinking are chosen so the size stays within `radius`.
Frames are at the rate of a clip's frames: one frame here is one of `num_frames` frames the encoder reads.

Rendered with numpy on the host (a few hundred small videos for an evaluation), not inside tf.data.
"""

import dataclasses
import math

import numpy as np

from jvssl.data.synthetic import MOTIONS

_SPLIT_SALT = {"train": 0, "test": 1, "val": 2}
SHAPES = ("disk", "square", "triangle", "bar")


@dataclasses.dataclass(frozen=True)
class SegmentationVideos:
  """Videos with a label per frame. video(index) -> (uint8 [length, size, size, 3], int32 [length]).

  num_classes: the first N of `synthetic.MOTIONS`; segment: (shortest, longest) run of one motion in frames;
  travel, turn, zoom: per-frame translation (image widths), rotation (radians) and log-size change, drawn per
  segment; radius: the shape's radius in image widths, (smallest, largest).
  """

  length: int
  size: int
  num_classes: int = 4
  segment: tuple[int, int] = (6, 16)
  travel: tuple[float, float] = (0.02, 0.04)
  turn: tuple[float, float] = (0.15, 0.3)
  zoom: tuple[float, float] = (0.02, 0.04)
  radius: tuple[float, float] = (0.15, 0.32)
  pixel_noise: float = 0.02
  seed: int = 4321

  def __post_init__(self):
    if not 2 <= self.num_classes <= len(MOTIONS):
      raise ValueError(f"num_classes must be in 2..{len(MOTIONS)}, got {self.num_classes}")
    if self.num_classes == 7:
      raise ValueError("num_classes 7 has 'grow' but not 'shrink', which it needs to keep the size in range")
    if not 1 <= self.segment[0] <= self.segment[1]:
      raise ValueError(f"segment must be (shortest, longest) with 1 <= shortest <= longest, got {self.segment}")

  def labels(self, rng: np.random.Generator) -> np.ndarray:
    """int32 [length]: runs of `segment` frames, each a motion other than the one before it."""
    out, last = [], -1
    while len(out) < self.length:
      motion = int(rng.integers(0, self.num_classes - 1))
      motion += motion >= last >= 0  # Any class but the previous one.
      out += [motion] * int(rng.integers(self.segment[0], self.segment[1] + 1))
      last = motion
    return np.asarray(out[: self.length], np.int32)

  def video(self, index: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    rng, labels, shape, pose = self._draw(index, split)
    return self._render(rng, shape, *pose), labels

  def masks(self, index: int, split: str = "train") -> np.ndarray:
    """bool [length, size, size]: where video(index, split) shows its shape (its soft edge cut at one half)."""
    _, _, shape, pose = self._draw(index, split)
    return self._soft_mask(shape, *pose) > 0.5

  def _draw(self, index: int, split: str):
    """(rng, per-frame labels, shape, pose (cx, cy, angle, radius) per frame) of one video; rng then draws its
    colours."""
    rng = np.random.default_rng([self.seed, _SPLIT_SALT[split], index])
    labels = self.labels(rng)
    shape = int(rng.integers(0, len(SHAPES)))
    # Per-frame steps of the pose, from each segment's draws; growing and shrinking swap where the size would leave
    # its range, so a run of "grow" is always growth.
    steps = np.zeros((self.length, 4))  # dx, dy, dangle, dlog_radius
    log_r0 = log_r = math.log(rng.uniform(*self.radius))
    lo, hi = math.log(self.radius[0]), math.log(self.radius[1])
    start = 0
    for end in [*np.flatnonzero(np.diff(labels)) + 1, self.length]:
      n = end - start
      dx, dy, rot, zoom = MOTIONS[labels[start]][1]
      rate = rng.uniform(*self.zoom)
      if zoom and not lo <= log_r + zoom * rate * n <= hi:
        zoom = -zoom
        labels[start:end] = [name for name, _ in MOTIONS].index("grow" if zoom > 0 else "shrink")
      steps[start:end] = (
        dx * rng.uniform(*self.travel),
        dy * rng.uniform(*self.travel),
        rot * rng.uniform(*self.turn),
        zoom * rate,
      )
      log_r += zoom * rate * n
      start = end
    # Pose at frame t: the start pose plus the steps of the frames before it.
    pose = np.cumsum(np.concatenate([np.zeros((1, 4)), steps[:-1]]), axis=0)
    pose += (rng.uniform(), rng.uniform(), rng.uniform(0, 2 * math.pi), log_r0)
    return rng, labels, shape, (pose[:, 0], pose[:, 1], pose[:, 2], np.exp(pose[:, 3]))

  def _shape_coords(self, cx, cy, angle, radius):
    """Each pixel's coordinates (u, v) in the shape's frame, in radii, per frame."""
    coords = (np.arange(self.size) + 0.5) / self.size
    # Offsets from the centre on the torus, so a shape crossing an edge shows on both sides.
    dx = (coords[None, None, :] - cx[:, None, None] + 0.5) % 1.0 - 0.5
    dy = (coords[None, :, None] - cy[:, None, None] + 0.5) % 1.0 - 0.5
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    r = radius[:, None, None]
    return (dx * cos + dy * sin) / r, (-dx * sin + dy * cos) / r

  def _soft_mask(self, shape: int, cx, cy, angle, radius) -> np.ndarray:
    """How much of each pixel the shape covers, per frame [length, size, size] in [0, 1]."""
    u, v = self._shape_coords(cx, cy, angle, radius)
    inside = {
      "disk": lambda: 1.0 - np.hypot(u, v),
      "square": lambda: 0.8 - np.maximum(abs(u), abs(v)),
      "triangle": lambda: np.min(
        [0.5 - (u * math.cos(a) + v * math.sin(a)) for a in np.pi / 2 + np.arange(3) * 2 * np.pi / 3], axis=0
      ),
      "bar": lambda: np.minimum(1.0 - abs(u), 0.4 - abs(v)),
    }[SHAPES[shape]]()
    r = radius[:, None, None]
    return 1.0 / (1.0 + np.exp(-np.clip(inside * r * self.size * 2.0, -30, 30)))

  def _render(self, rng, shape: int, cx, cy, angle, radius) -> np.ndarray:
    mask = self._soft_mask(shape, cx, cy, angle, radius)
    u, _ = self._shape_coords(cx, cy, angle, radius)
    # Stripes fixed to the shape, so rotation shows on round shapes too.
    stripes = 0.5 + 0.5 * np.sin(u * rng.uniform(2.0, 5.0) + rng.uniform(0, 2 * math.pi))
    colour_a, colour_b, background = rng.uniform(size=3), rng.uniform(size=3), rng.uniform(0.15, 0.85, size=3)
    shape_rgb = colour_a * stripes[..., None] + colour_b * (1.0 - stripes[..., None])
    frames = background * (1.0 - mask[..., None]) + shape_rgb * mask[..., None]
    frames += self.pixel_noise * rng.normal(size=frames.shape)
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)

  def split(self, split: str, num_videos: int) -> tuple[np.ndarray, np.ndarray]:
    """The first num_videos videos of `split`: (uint8 [V, length, size, size, 3], int32 [V, length])."""
    pairs = [self.video(i, split) for i in range(num_videos)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@dataclasses.dataclass(frozen=True)
class PhaseVideos(SegmentationVideos):
  """Repetitions of one "action" for video alignment (TCC's setting): every video goes through the motions
  `phases` (indices of `synthetic.MOTIONS`) in that order, each for at least `segment[0]` frames and a random
  share of the rest; shape, colours, start pose and speeds differ per video. video(index) -> (uint8
  [length, size, size, 3], int32 [length] phase index 0..len(phases)-1).

  Growing and shrinking are left out of the default phases: the size limits can turn one into the other.
  """

  phases: tuple[int, ...] = (0, 2, 4, 1)  # right, down, rotate_cw, left.

  def __post_init__(self):
    super().__post_init__()
    if any(a == b for a, b in zip(self.phases, self.phases[1:])):
      raise ValueError(f"consecutive phases must be different motions, got {self.phases}")
    if self.length < len(self.phases) * self.segment[0]:
      raise ValueError(f"{self.length} frames cannot hold {len(self.phases)} phases of {self.segment[0]} or more")

  def labels(self, rng: np.random.Generator) -> np.ndarray:
    extra = rng.multinomial(self.length - len(self.phases) * self.segment[0], rng.dirichlet(np.ones(len(self.phases))))
    return np.repeat(np.asarray(self.phases, np.int32), self.segment[0] + extra)

  def video(self, index: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    frames, motions = super().video(index, split)
    return frames, np.concatenate([[0], np.cumsum(np.diff(motions) != 0)]).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class NearDuplicates:
  """A near-duplicate retrieval benchmark (FIVR's and CC_WEB_VIDEO's setting) made of `videos`' test split.

  Queries are the first videos; the database holds `copies` near-duplicates of each query among distractors
  (other videos, never a query). A copy shows a random `span` of the query's duration stretched to its length
  (re-timed), a random square crop of `crop` of its side scaled back to full size, and is JPEG re-encoded at a
  quality in `jpeg_quality`. Everything follows from (videos.seed, index).
  """

  videos: SegmentationVideos
  copies: int = 2
  span: tuple[float, float] = (0.6, 1.0)
  crop: tuple[float, float] = (0.7, 0.9)
  jpeg_quality: tuple[int, int] = (20, 60)

  def copy(self, video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A near-duplicate of video uint8 [L, S, S, 3], of the same shape."""
    import tensorflow as tf  # Only here: the rest of this module renders with numpy.

    length, size = video.shape[:2]
    span = rng.uniform(*self.span) * (length - 1)
    start = rng.uniform(0, length - 1 - span)
    frames = video[np.round(np.linspace(start, start + span, length)).astype(int)]
    side = int(round(rng.uniform(*self.crop) * size))
    y, x = rng.integers(0, size - side + 1, 2)
    frames = tf.image.resize(frames[:, y : y + side, x : x + side], (size, size), antialias=True)
    frames = tf.cast(tf.clip_by_value(tf.round(frames), 0, 255), tf.uint8)
    quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
    return np.stack([tf.io.decode_jpeg(tf.io.encode_jpeg(f, quality=quality)).numpy() for f in frames])

  def build(self, num_queries: int, num_distractors: int):
    """(queries uint8 [Q, L, S, S, 3], database uint8 [Q * copies + D, L, S, S, 3], query ids, database ids,
    positives: query id -> its copies' ids). Database order is shuffled, so rank alone says nothing."""
    queries = np.stack([self.videos.video(i, "test")[0] for i in range(num_queries)])
    rng = np.random.default_rng([self.videos.seed, 7, num_queries, num_distractors])
    database, database_ids = [], []
    for q in range(num_queries):
      for c in range(self.copies):
        database.append(self.copy(queries[q], rng))
        database_ids.append(f"q{q}_copy{c}")
    for d in range(num_distractors):
      database.append(self.videos.video(num_queries + d, "test")[0])
      database_ids.append(f"distractor{d}")
    order = rng.permutation(len(database))
    query_ids = [f"q{q}" for q in range(num_queries)]
    positives = {f"q{q}": frozenset(f"q{q}_copy{c}" for c in range(self.copies)) for q in range(num_queries)}
    return queries, np.stack(database)[order], query_ids, [database_ids[i] for i in order], positives
