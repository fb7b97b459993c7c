"""VICReg (Bardes, Ponce & LeCun, ICLR 2022) on clips: two clips of a video are pulled together
(invariance) while each dimension of the expander's output keeps a standard deviation of at least
gamma over the batch (variance) and the dimensions stay decorrelated (covariance). No negatives,
no momentum teacher, no stop-gradient: the last two terms alone prevent collapse.

The paper's loss weights (25, 25, 1), gamma 1 and eps 1e-4, and its 3-layer expander of width
8192 with batch norm, are the defaults. Statistics are over the global batch: under `jax.jit` the
mean and covariance of a batch sharded over devices are computed across all of them.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.methods import embedding, heads, losses, views
from jvssl.methods.base import Inputs, Method


def invariance(z1: jax.Array, z2: jax.Array) -> jax.Array:
  """Mean squared difference of the two views' embeddings, z1, z2 [B, D]."""
  return jnp.mean(jnp.square(z1 - z2))


def variance(z: jax.Array, gamma: float, eps: float) -> jax.Array:
  """Hinge on each dimension's standard deviation over the batch: mean_d relu(gamma - sqrt(var_d + eps))."""
  std = jnp.sqrt(jnp.var(z, axis=0, ddof=1) + eps)
  return jnp.mean(jax.nn.relu(gamma - std))


def covariance(z: jax.Array) -> jax.Array:
  """Sum of the squared off-diagonal entries of the batch covariance of z [B, D], divided by D."""
  n, d = z.shape
  centred = z - z.mean(axis=0)
  cov = centred.T @ centred / (n - 1)
  off_diagonal = cov - jnp.diag(jnp.diag(cov))
  return jnp.sum(jnp.square(off_diagonal)) / d


class VICRegModel(nnx.Module):
  def __init__(self, config, *, rngs: nnx.Rngs):
    m = config.method
    dtype, param_dtype = models.dtypes(config)
    self.encoder = models.build(config, rngs=rngs)
    self.expander = heads.MLP(
      self.encoder.width,
      m.expander_dim,
      m.expander_dim,
      num_layers=m.expander_layers,
      batch_norm=True,
      dtype=dtype,
      param_dtype=param_dtype,
      rngs=rngs,
    )


@registry.METHODS.register("vicreg")
class VICReg(Method):
  """Invariance, variance and covariance terms between the expanded embeddings of two clips of a video."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "expander_dim": 8192,
        "expander_layers": 3,
        "invariance_weight": 25.0,  # lambda
        "variance_weight": 25.0,  # mu
        "covariance_weight": 1.0,  # nu
        "variance_gamma": 1.0,  # Target standard deviation of each dimension.
        "variance_eps": 1e-4,
        **views.view_fields(),
      }
    )

  def inputs(self) -> Inputs:
    return Inputs(all_clips=True)

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return VICRegModel(self.config, rngs=rngs)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    view_rng, enc_rng = jax.random.split(rng)
    videos = views.clip_views(view_rng, batch["video"], 2, **views.options(m))
    z = model.expander(embedding.encode_views(model.encoder, videos, enc_rng)).reshape(-1, 2, m.expander_dim)
    z1, z2 = z[:, 0], z[:, 1]
    inv = invariance(z1, z2)
    var = (variance(z1, m.variance_gamma, m.variance_eps) + variance(z2, m.variance_gamma, m.variance_eps)) / 2
    cov = covariance(z1) + covariance(z2)
    loss = m.invariance_weight * inv + m.variance_weight * var + m.covariance_weight * cov
    metrics = dict(losses.collapse_watch(z1), invariance=inv, variance=var, covariance=cov)
    return loss, metrics
