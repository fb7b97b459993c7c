"""Projection and prediction heads of the embedding methods (SimCLR, MoCo v3, BYOL, DINO) and pretext tasks."""

import jax
import jax.numpy as jnp
from flax import nnx

from jvssl.methods.losses import l2_normalize
from jvssl.models import layers


class MLP(nnx.Module):
  """Linear -> [BatchNorm] -> ReLU, repeated, then a last Linear [-> BatchNorm without scale/shift].

  x [..., in] -> [..., out]. BatchNorm always uses the statistics of the current (global) batch:
  heads exist only in training. last_batch_norm is MoCo v3's and SimCLR v2's affine-free output BN.
  """

  def __init__(
    self,
    in_features: int,
    hidden: int,
    out_features: int,
    *,
    num_layers: int = 2,
    batch_norm: bool = True,
    last_batch_norm: bool = False,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    if num_layers < 1:
      raise ValueError(f"an MLP head needs at least one layer, got {num_layers}")
    sizes = [in_features] + [hidden] * (num_layers - 1) + [out_features]
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.linears = nnx.List(
      [
        layers.Dense(a, b, axes=(None, None), use_bias=not batch_norm or i == num_layers - 1, **kw)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
      ]
    )
    self.norms = nnx.List(
      [nnx.BatchNorm(hidden, momentum=0.9, **kw) for _ in range(num_layers - 1)] if batch_norm else []
    )
    self.last_norm = (
      nnx.BatchNorm(out_features, use_scale=False, use_bias=False, momentum=0.9, **kw) if last_batch_norm else None
    )

  def __call__(self, x):
    for i, linear in enumerate(self.linears[:-1]):
      x = linear(x)
      if len(self.norms):
        x = self.norms[i](x.astype(jnp.float32), use_running_average=False)
      x = jax.nn.relu(x)
    x = self.linears[-1](x)
    if self.last_norm is not None:
      x = self.last_norm(x.astype(jnp.float32), use_running_average=False)
    return x.astype(jnp.float32)


class DINOHead(nnx.Module):
  """DINO's head: MLP (GELU, no BN) to a bottleneck, L2 norm, then a weight-normalised linear to K prototypes.

  x [..., in] -> logits [..., num_prototypes] (float32). The prototypes' norm is fixed to 1 (DINO's
  norm_last_layer), which keeps the teacher's output bounded.
  """

  def __init__(
    self,
    in_features: int,
    hidden: int,
    bottleneck: int,
    num_prototypes: int,
    *,
    num_layers: int = 3,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    sizes = [in_features] + [hidden] * (num_layers - 1) + [bottleneck]
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.linears = nnx.List([layers.Dense(a, b, axes=(None, None), **kw) for a, b in zip(sizes[:-1], sizes[1:])])
    self.prototypes = layers.param(
      rngs, nnx.initializers.truncated_normal(0.02), (bottleneck, num_prototypes), (None, None), param_dtype
    )

  def __call__(self, x):
    for linear in self.linears[:-1]:
      x = jax.nn.gelu(linear(x))
    x = l2_normalize(self.linears[-1](x))
    w = self.prototypes[...].astype(jnp.float32)
    return x @ (w * jax.lax.rsqrt(jnp.maximum(jnp.sum(w * w, axis=0, keepdims=True), 1e-12)))
