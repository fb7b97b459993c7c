"""Backbones, registered by name in `jvssl.registry.MODELS`."""

import jax
import jax.numpy as jnp
from flax import nnx

from jvssl import registry


def dtypes(config) -> tuple[jnp.dtype, jnp.dtype]:
  """(compute dtype, parameter dtype) of config.train. compute_dtype "auto" is float32 on the CPU, where XLA's
  bfloat16 matmuls are slower than its float32 ones, and bfloat16 on GPUs and TPUs."""
  compute = config.train.compute_dtype
  if compute == "auto":
    compute = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  return jnp.dtype(compute), jnp.dtype(config.train.param_dtype)


def dtype_kw(config) -> dict:
  """{"dtype", "param_dtype"} of `dtypes(config)`, the keyword arguments of jvssl's modules."""
  compute, param = dtypes(config)
  return {"dtype": compute, "param_dtype": param}


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
    **dtype_kw(config),
  )
