"""SimCLR / CVRL: InfoNCE between clips of the same video, negatives from the whole global batch.

CVRL (Qian et al., CVPR 2021) takes K clips of one video, each with its own
spatial crop applied consistently over its frames, at a random temporal
interval; the data pipeline makes them (data.clips_per_video = K,
data.max_clip_distance). With one clip per video the views are made on the
device instead (views.random_view).
"""

import jax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.methods import embedding, heads, losses, views
from jvssl.methods.base import Inputs, Method


class SimCLRModel(nnx.Module):
  def __init__(self, config, *, rngs: nnx.Rngs):
    m = config.method
    dtype, param_dtype = models.dtypes(config)
    self.encoder = models.build(config, rngs=rngs)
    self.head = heads.MLP(
      self.encoder.width,
      m.hidden_dim,
      m.embed_dim,
      num_layers=m.head_layers,
      batch_norm=m.batch_norm,
      dtype=dtype,
      param_dtype=param_dtype,
      rngs=rngs,
    )


@registry.METHODS.register("simclr")
class SimCLR(Method):
  """NT-Xent over num_views clips per video (CVRL's recipe: 3-layer MLP head with BN, temperature 0.1)."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "num_views": 2,
        "temperature": 0.1,
        "hidden_dim": 2048,
        "embed_dim": 128,
        "head_layers": 3,
        "batch_norm": True,
        **views.view_fields(),
      }
    )

  def inputs(self) -> Inputs:
    return Inputs(all_clips=True)

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return SimCLRModel(self.config, rngs=rngs)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    view_rng, enc_rng = jax.random.split(rng)
    videos = views.clip_views(view_rng, batch["video"], m.num_views, **views.options(m))
    z = model.head(embedding.encode_views(model.encoder, videos, enc_rng))
    loss = losses.info_nce(z, m.num_views, m.temperature)
    return loss, losses.collapse_watch(z)
