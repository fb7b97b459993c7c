"""Preprocessing that runs on the accelerator, inside the jitted steps."""

import jax
import jax.numpy as jnp

NORMALIZATIONS = ("dataset", "per_clip")
# Per-clip standard deviations are floored here (on [0, 1] pixels), so a plain clip is not blown up into noise.
_MIN_CLIP_STD = 0.02


def normalize_video(video: jax.Array, data_config) -> jax.Array:
  """uint8 video [..., T, H, W, 3] -> float32, standardised as data.normalize says: with data.mean/std (given for
  [0, 1] pixels), or per clip with its own per-channel mean and std over (T, H, W).

  Clips travel to the device as uint8, a quarter of the bytes of float32.
  """
  how = data_config.get("normalize", "dataset")  # Configs saved before the field standardised by data set.
  if how == "per_clip":
    x = video.astype(jnp.float32) / 255.0
    mean = x.mean(axis=(-4, -3, -2), keepdims=True)
    std = jnp.sqrt(jnp.mean(jnp.square(x - mean), axis=(-4, -3, -2), keepdims=True))
    return (x - mean) / jnp.maximum(std, _MIN_CLIP_STD)
  if how != "dataset":
    raise ValueError(f"data.normalize must be one of {NORMALIZATIONS}, not {how!r}")
  mean = jnp.asarray(data_config.mean, jnp.float32) * 255.0
  std = jnp.asarray(data_config.std, jnp.float32) * 255.0
  return (video.astype(jnp.float32) - mean) / std
