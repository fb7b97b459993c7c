"""Views and pretext labels made on the device from clips, from a PRNG key (pure functions, jittable).

Every view keeps the clip's geometry [T, S, S, 3], so any backbone (including
a ViT with a fixed position table) sees the shape it was built for: a view of
fewer frames or a lower frame rate is a shorter temporal window resampled to
T frames, a small spatial crop is resized to S x S.
"""

import itertools

import einops
import jax
import jax.numpy as jnp
import numpy as np


def resample_time(video: jax.Array, start: jax.Array, rate: jax.Array) -> jax.Array:
  """video [B, T, H, W, C]; start, rate: float [B] -> frames floor(start + rate * t), t < T, clipped to the clip."""
  t = video.shape[1]
  idx = jnp.clip(jnp.floor(start[:, None] + rate[:, None] * jnp.arange(t)), 0, t - 1).astype(jnp.int32)
  return jnp.take_along_axis(video, idx[:, :, None, None, None], axis=1)


def crop_resize(video: jax.Array, boxes: jax.Array, size: int) -> jax.Array:
  """video [B, T, H, W, C]; boxes [B, 4] (top, left, height, width) as fractions -> [B, T, size, size, C]."""
  h, w = video.shape[2], video.shape[3]

  def one(clip, box):
    scale = jnp.array([size / (box[2] * h), size / (box[3] * w)])
    translation = -jnp.array([box[0] * h, box[1] * w]) * scale
    out_shape = (clip.shape[0], size, size, clip.shape[3])
    return jax.image.scale_and_translate(
      clip.astype(jnp.float32), out_shape, (1, 2), scale, translation, "linear", antialias=True
    )

  return jax.vmap(one)(video, boxes).astype(video.dtype)


def random_boxes(rng: jax.Array, batch: int, scale: tuple[float, float], ratio=(3 / 4, 4 / 3)) -> jax.Array:
  """Random-resized-crop boxes [batch, 4] (top, left, height, width) as fractions of the frame."""
  k_area, k_ratio, k_pos = jax.random.split(rng, 3)
  area = jax.random.uniform(k_area, (batch,), minval=scale[0], maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(k_ratio, (batch,), minval=np.log(ratio[0]), maxval=np.log(ratio[1])))
  height = jnp.minimum(jnp.sqrt(area / aspect), 1.0)
  width = jnp.minimum(jnp.sqrt(area * aspect), 1.0)
  pos = jax.random.uniform(k_pos, (batch, 2))
  return jnp.stack([pos[:, 0] * (1 - height), pos[:, 1] * (1 - width), height, width], axis=1)


def random_view(
  rng: jax.Array,
  video: jax.Array,
  *,
  crop_scale: tuple[float, float],
  frame_fraction: tuple[float, float],
  flip: bool = True,
  temporally_consistent: bool = True,
) -> jax.Array:
  """One spatio-temporal view per clip: a window of a random fraction of the clip's duration (so fewer
  distinct frames, a lower rate), a random resized crop, a random flip. video [B, T, S, S, C] -> same shape.

  temporally_consistent: one crop and flip for all frames of a view (CVRL); False draws them per frame."""
  b, t, size = video.shape[0], video.shape[1], video.shape[2]
  k_frac, k_start, k_box, k_flip = jax.random.split(rng, 4)
  fraction = jax.random.uniform(k_frac, (b,), minval=frame_fraction[0], maxval=frame_fraction[1])
  start = jax.random.uniform(k_start, (b,)) * (1.0 - fraction) * t
  view = resample_time(video, start, fraction)
  draws = b if temporally_consistent else b * t  # One crop and flip per view, or per frame.
  frames = einops.rearrange(view, "b (t1 t) h w c -> (b t1) t h w c", t1=draws // b)
  frames = crop_resize(frames, random_boxes(k_box, draws, crop_scale), size)
  if flip:
    flipped = jax.random.bernoulli(k_flip, 0.5, (draws,))
    frames = jnp.where(flipped[:, None, None, None, None], frames[:, :, :, ::-1], frames)
  return einops.rearrange(frames, "(b t1) t h w c -> b (t1 t) h w c", b=b)


def multi_view(rng: jax.Array, video: jax.Array, num_views: int, **view_kw) -> jax.Array:
  """num_views independent random_views: video [B, T, S, S, C] -> [B, V, T, S, S, C]."""
  return jnp.stack([random_view(k, video, **view_kw) for k in jax.random.split(rng, num_views)], axis=1)


def speed_views(rng: jax.Array, video: jax.Array, speeds: tuple[float, ...]) -> tuple[jax.Array, jax.Array]:
  """Playback-speed views: label k plays the clip at rate speeds[k] / max(speeds) (the fastest is the clip
  itself, slower ones repeat frames of a shorter window). Returns (views [B, T, ...], labels int32 [B])."""
  b, t = video.shape[:2]
  k_label, k_start = jax.random.split(rng)
  labels = jax.random.randint(k_label, (b,), 0, len(speeds))
  rate = jnp.asarray(speeds, jnp.float32)[labels] / max(speeds)
  start = jax.random.uniform(k_start, (b,)) * (1.0 - rate) * t
  return resample_time(video, start, rate), labels


def permutation_set(n: int, count: int, seed: int = 0) -> np.ndarray:
  """`count` permutations of range(n) far apart in Hamming distance (greedy max-min, as the jigsaw
  papers choose them), identity first. Deterministic given (n, count, seed). Returns int32 [count, n]."""
  all_perms = np.array(list(itertools.permutations(range(n))), np.int32)
  if count > len(all_perms):
    raise ValueError(f"only {len(all_perms)} permutations of {n} items, asked for {count}")
  rng = np.random.default_rng(seed)
  chosen = [0]
  distance = (all_perms != all_perms[0]).sum(1)
  for _ in range(count - 1):
    best = np.flatnonzero(distance == distance.max())
    pick = int(rng.choice(best))
    chosen.append(pick)
    distance = np.minimum(distance, (all_perms != all_perms[pick]).sum(1))
  return all_perms[chosen]


def _random_permutations(rng, batch: int, perms: np.ndarray) -> tuple[jax.Array, jax.Array]:
  labels = jax.random.randint(rng, (batch,), 0, len(perms))
  return jnp.asarray(perms)[labels], labels


def shuffle_segments(rng: jax.Array, video: jax.Array, perms: np.ndarray) -> tuple[jax.Array, jax.Array]:
  """Temporal order: the clip cut into n = perms.shape[1] segments played in the order of a permutation from
  `perms`. video [B, T, ...] (T divisible by n) -> (shuffled video, labels int32 [B]: index into perms)."""
  b, t = video.shape[:2]
  n = perms.shape[1]
  if t % n:
    raise ValueError(f"{t} frames do not split into {n} segments")
  perm, labels = _random_permutations(rng, b, perms)
  seg = t // n
  idx = (perm[:, :, None] * seg + jnp.arange(seg)).reshape(b, t)
  return jnp.take_along_axis(video, idx.reshape(b, t, *([1] * (video.ndim - 2))), axis=1), labels


def jigsaw_cells(
  rng: jax.Array,
  video: jax.Array,
  perms: np.ndarray,
  grid: tuple[int, int, int],
  gap: int = 0,
  standardize_cells: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """The jigsaw's cells before they are put back together: video [B, T, H, W, C] cut into a (time, height,
  width) grid of N cells, the cells in the order of a permutation from `perms` (perms.shape[1] == N).
  Returns (cells [B, N, T/gt, H/gh, W/gw, C], labels int32 [B]: index into perms).

  gap > 0: each cell keeps only a (h - gap) x (w - gap) crop at a random offset of its own, centred in the
  cell on zeros (the data mean), as Noroozi & Favaro cut 64-pixel tiles from 85-pixel cells. Abutting cells
  let a network solve the puzzle by matching the pixels on either side of a cut, a shortcut that teaches
  nothing about the content; the gap and the jitter take it away.

  standardize_cells: each cell gets zero mean and unit variance per channel (`standardize_views`), as Noroozi &
  Favaro normalise every tile, so that a cell's brightness and colour do not tell which cells were neighbours."""
  gt, gh, gw = grid
  if perms.shape[1] != gt * gh * gw:
    raise ValueError(f"permutations of {perms.shape[1]} items do not fit a {gt}x{gh}x{gw} grid")
  perm, labels = _random_permutations(rng, video.shape[0], perms)
  cells = einops.rearrange(video, "b (gt t) (gh h) (gw w) c -> b (gt gh gw) t h w c", gt=gt, gh=gh, gw=gw)
  if standardize_cells:
    cells = standardize_views(cells)
  if gap:
    cells = _jittered_crops(jax.random.fold_in(rng, 1), cells, gap)
  return jnp.take_along_axis(cells, perm.reshape(*perm.shape, 1, 1, 1, 1), axis=1), labels


def jigsaw(
  rng: jax.Array, video: jax.Array, perms: np.ndarray, grid: tuple[int, int, int], **cell_options
) -> tuple[jax.Array, jax.Array]:
  """Spatio-temporal jigsaw: the cells of `jigsaw_cells` (which takes the options: gap, standardize_cells) put
  back together into one clip [B, T, H, W, C]. Returns (video, labels int32 [B])."""
  gt, gh, gw = grid
  cells, labels = jigsaw_cells(rng, video, perms, grid, **cell_options)
  return einops.rearrange(cells, "b (gt gh gw) t h w c -> b (gt t) (gh h) (gw w) c", gt=gt, gh=gh, gw=gw), labels


def _jittered_crops(rng: jax.Array, cells: jax.Array, gap: int) -> jax.Array:
  """cells [B, N, t, h, w, C] -> each cell's (h - gap) x (w - gap) crop at a random offset, zero-padded back
  to h x w with the crop in the middle."""
  b, n, t, h, w, c = cells.shape
  if not 0 < gap < min(h, w):
    raise ValueError(f"a jigsaw gap of {gap} pixels does not fit {h}x{w} cells")
  offsets = jax.random.randint(rng, (b, n, 2), 0, gap + 1)
  crop = lambda cell, o: jax.lax.dynamic_slice(cell, (0, o[0], o[1], 0), (t, h - gap, w - gap, c))
  crops = jax.vmap(jax.vmap(crop))(cells, offsets)
  before = gap // 2
  return jnp.pad(crops, ((0, 0), (0, 0), (0, 0), (before, gap - before), (before, gap - before), (0, 0)))


def rotate(rng: jax.Array, video: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Rotation by k * 90 degrees in the image plane (square frames). Returns (video, labels k int32 [B])."""
  labels = jax.random.randint(rng, (video.shape[0],), 0, 4)
  rotations = jnp.stack([jnp.rot90(video, k, axes=(2, 3)) for k in range(4)], axis=1)
  return jnp.take_along_axis(rotations, labels.reshape(-1, 1, 1, 1, 1, 1), axis=1)[:, 0], labels


def color_jitter(
  rng: jax.Array, video: jax.Array, strength: float, grayscale_prob: float, temporally_consistent: bool = True
) -> jax.Array:
  """Per-clip photometric jitter of normalised video [B, T, H, W, C]: a random gain in 1 +- strength and
  offset in +- strength (units of the data std) per channel, then grey with probability grayscale_prob.
  Without it a contrastive method can match clips by their colours alone. temporally_consistent False:
  one draw per frame instead of per clip."""
  b, t, c = video.shape[0], video.shape[1], video.shape[-1]
  per = (b, 1 if temporally_consistent else t, 1, 1)
  k_gain, k_offset, k_gray = jax.random.split(rng, 3)
  gain = 1.0 + strength * jax.random.uniform(k_gain, (*per, c), minval=-1.0, maxval=1.0)
  offset = strength * jax.random.uniform(k_offset, (*per, c), minval=-1.0, maxval=1.0)
  video = video * gain + offset
  gray = jax.random.bernoulli(k_gray, grayscale_prob, (*per, 1))
  return jnp.where(gray, video.mean(axis=-1, keepdims=True), video)


def clip_views(
  rng: jax.Array,
  video: jax.Array,
  num_views: int,
  *,
  color_strength: float = 0.0,
  grayscale_prob: float = 0.0,
  temporally_consistent: bool = True,
  standardize: bool = False,
  **view_kw,
) -> jax.Array:
  """The views an embedding method contrasts: video [B, K, T, S, S, C] or [B, T, S, S, C] -> [B, V, T, S, S, C].

  With K >= num_views clips per video from the data (each with its own host-side crop and, with
  data.max_clip_distance / synthetic.video_length, its own time), the first num_views clips are the views
  (CVRL's temporally consistent spatial augmentation and temporal interval sampling). Otherwise the views
  are made here from the first clip with `random_view(**view_kw)`. color_strength or grayscale_prob > 0
  adds color_jitter. temporally_consistent False draws the crop, flip and colours made here per frame
  (CVRL's ablation); crops made on the host (data.augment) stay one per clip. standardize: each view then
  gets zero mean and unit variance per channel over its frames (`standardize_views`).
  """
  view_rng, color_rng = jax.random.split(rng)
  if video.ndim == 6 and video.shape[1] >= num_views:
    out = video[:, :num_views]
  else:
    out = multi_view(view_rng, first_clip(video), num_views, temporally_consistent=temporally_consistent, **view_kw)
  if color_strength > 0 or grayscale_prob > 0:
    flat = einops.rearrange(out, "b v ... -> (b v) ...")
    jittered = color_jitter(color_rng, flat, color_strength, grayscale_prob, temporally_consistent)
    out = jittered.reshape(out.shape)
  return standardize_views(out) if standardize else out


def standardize_views(views: jax.Array, min_std: float = 0.1) -> jax.Array:
  """[B, V, T, H, W, C] -> each view with zero mean and unit variance per channel over (T, H, W).

  A view's colour cast and contrast are gone, so what two views of one video still share is their content.
  min_std (in the units of the input, here standardised pixels) keeps a plain view from being blown up.
  """
  mean = views.mean(axis=(2, 3, 4), keepdims=True)
  std = jnp.sqrt(jnp.mean(jnp.square(views - mean), axis=(2, 3, 4), keepdims=True))
  return (views - mean) / jnp.maximum(std, min_std)


def first_clip(video: jax.Array) -> jax.Array:
  """[B, K, T, H, W, C] -> its first clip [B, T, H, W, C]; a single clip [B, T, H, W, C] as it is."""
  return video[:, 0] if video.ndim == 6 else video


def view_fields(**overrides) -> dict:
  """The `config.method` fields of the views an embedding method makes on the device, with defaults.

  A method that calls `clip_views(..., **options(config.method))` puts these in its default_config.
  """
  fields = {
    # Used when the data gives fewer clips per video than the method has views.
    "view_crop_scale": (0.3, 1.0),  # Area fraction of the random resized crop.
    "view_frame_fraction": (0.5, 1.0),  # Fraction of the clip's duration a view spans.
    "view_color_strength": 0.0,  # > 0: random per-channel gain and offset of every view (color_jitter).
    "view_grayscale_prob": 0.0,  # Probability that a view is turned grey (SimCLR/CVRL use 0.2).
    # Mirror half the views made here left-right; off where a mirror image changes the class (a motion
    # "right" becomes "left", clockwise becomes counter-clockwise).
    "view_flip": True,
    # Standardise every view per channel over its frames (`standardize_views`), in training only: a momentum
    # teacher at initialisation then sees what two clips of a video share rather than their colours.
    "view_standardize": False,
    # One crop, flip and colour draw for all frames of a view (CVRL's temporally consistent spatial
    # augmentation); False: one per frame, the inconsistent augmentation CVRL shows to hurt.
    "view_temporally_consistent": True,
  }
  unknown = set(overrides) - set(fields)
  if unknown:
    raise ValueError(f"not view fields: {sorted(unknown)}")
  fields.update(overrides)
  return fields


def options(method_config) -> dict:
  """clip_views' keyword arguments from the `view_fields` of a method's config."""
  return dict(
    crop_scale=tuple(method_config.view_crop_scale),
    frame_fraction=tuple(method_config.view_frame_fraction),
    flip=method_config.get("view_flip", True),  # Configs saved before the field mirrored.
    color_strength=method_config.view_color_strength,
    grayscale_prob=method_config.view_grayscale_prob,
    temporally_consistent=method_config.view_temporally_consistent,
    standardize=method_config.get("view_standardize", False),
  )
