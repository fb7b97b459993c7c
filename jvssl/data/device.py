"""Preprocessing that runs on the accelerator, inside the jitted steps."""

import jax
import jax.numpy as jnp


def normalize_video(video: jax.Array, data_config) -> jax.Array:
  """uint8 video [..., 3] -> float32 standardised with data.mean/std (given for [0, 1] pixels).

  Clips travel to the device as uint8, a quarter of the bytes of float32.
  """
  mean = jnp.asarray(data_config.mean, jnp.float32) * 255.0
  std = jnp.asarray(data_config.std, jnp.float32) * 255.0
  return (video.astype(jnp.float32) - mean) / std
