"""MaskFeat (Wei et al., "Masked Feature Prediction for Self-Supervised Visual Pre-Training", CVPR 2022):
the encoder sees every token, masked ones replaced by a learned mask token, and a linear head regresses
the HOG features (jvssl/models/hog.py: 9 bins, 8x8 cells, per-cell L2 norm, per colour channel) of each
masked tubelet's frames. No decoder: the encoder itself fills in the masked tubes.

The targets are computed on device from the normalised clip the step already holds; per-channel
normalisation does not change them. MaskFeat masks 40% of the video tokens in cubes; here the masks
are VideoMAE's (`mask_type` "tube" or "random", jvssl/methods/videomae.py).
"""

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.errors import ConfigError
from jvssl.methods.base import Method
from jvssl.methods.videomae import MASKS
from jvssl.models import hog, layers


class MaskFeatModel(nnx.Module):
  """Encoder with a mask token, and the linear HOG head."""

  def __init__(self, config, *, rngs: nnx.Rngs):
    m = config.method
    self.encoder = models.build(config, rngs=rngs)
    if not hasattr(self.encoder, "embed") or not hasattr(self.encoder, "grid"):
      raise ConfigError(f"MaskFeat needs a token backbone with embed/encode (like 'vit'), not '{config.model.name}'")
    pt, ph, pw = self.encoder.patch_size
    if ph % m.hog_cell or pw % m.hog_cell:
      raise ConfigError(f"method.hog_cell={m.hog_cell} must divide the model's {ph}x{pw} patches")
    dtype, param_dtype = models.dtypes(config)
    width = self.encoder.width
    self.mask_token = layers.param(rngs, nnx.initializers.truncated_normal(0.02), (width,), ("embed",), param_dtype)
    target_dim = pt * (ph // m.hog_cell) * (pw // m.hog_cell) * 3 * m.hog_orientations
    self.head = layers.Dense(width, target_dim, axes=("embed", None), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, video, masked, rng=None):
    """video [B, T, H, W, 3], masked int32 [B, Nm] token indices -> predictions [B, Nm, target_dim]."""
    x = self.encoder.embed(video)
    n = x.shape[1]
    is_masked = jax.vmap(lambda idx: jnp.zeros((n,), bool).at[idx].set(True))(masked)
    mask_tokens = self.encoder.add_positions(jnp.broadcast_to(self.mask_token[...].astype(x.dtype), x.shape))
    x = jnp.where(is_masked[..., None], mask_tokens, x)
    tokens = self.encoder.encode(x, rng)
    return self.head(jnp.take_along_axis(tokens, masked[..., None], axis=1))


@registry.METHODS.register("maskfeat")
class MaskFeat(Method):
  """Regression of the HOG features of masked tubelets from the encoder's outputs at their positions."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "mask_ratio": 0.4,  # MaskFeat's video masking ratio.
        "mask_type": "tube",  # "tube" or "random", as VideoMAE's.
        "hog_orientations": 9,
        "hog_cell": 8,
      }
    )

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    if self.config.method.mask_type not in MASKS:
      raise ConfigError(f"method.mask_type must be one of {list(MASKS)}, not {self.config.method.mask_type!r}")
    return MaskFeatModel(self.config, rngs=rngs)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    video = batch["video"]
    mask_rng, drop_rng = jax.random.split(rng)
    _, masked = MASKS[m.mask_type](mask_rng, video.shape[0], model.encoder.grid, m.mask_ratio)
    pred = model(video, masked, drop_rng).astype(jnp.float32)
    target = hog.tubelet_hog(video, model.encoder.patch_size, orientations=m.hog_orientations, cell=m.hog_cell)
    target = jnp.take_along_axis(target, masked[..., None], axis=1)
    loss = jnp.mean(jnp.square(pred - target))
    # The mean squared HOG entry: the loss of predicting zeros, a scale for the loss.
    return loss, {"hog_mse": loss, "target_power": jnp.mean(jnp.square(target))}
