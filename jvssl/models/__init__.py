"""Backbones, registered by name in `jvssl.registry.MODELS`."""

import jax.numpy as jnp
from flax import nnx

from jvssl import registry


def build(config, *, rngs: nnx.Rngs) -> nnx.Module:
  """The encoder named by `config.model`, for clips of `config.data` geometry.

  Returns a module mapping video [B, T, H, W, 3] (normalised floats) to
  {"tokens": [B, N, D], "pooled": [B, D]}, called as `encoder(video, rng=None,
  train=None)` (train defaults to `rng is not None`), with `.width` (D) and
  `.grid` (the (T', H', W') layout of the N tokens).
  """
  model_cls = registry.MODELS.get(config.model.name)
  return model_cls(
    config.model,
    num_frames=config.data.num_frames,
    image_size=config.data.image_size,
    rngs=rngs,
    dtype=jnp.dtype(config.train.compute_dtype),
    param_dtype=jnp.dtype(config.train.param_dtype),
  )
