"""Masked video modelling: VideoMAE (tube masking), MAE-ST (random masking), 3D-CSL's PredMAE
(future masking) and VideoMAE V2's dual masking.

The encoder sees only the visible tokens; a light decoder fills in mask tokens and
regresses the pixels of the masked tubelets, each normalised by its own mean and
std per channel (the "normalised pixel" target of MAE/VideoMAE). With
`decoder_mask_ratio` > 0 (VideoMAE V2) the decoder gets mask tokens for only part of
the masked tubelets, chosen by running-cell masking, and reconstructs just those.
"""

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.errors import ConfigError
from jvssl.methods.base import Method
from jvssl.models import layers


class VideoMAEModel(nnx.Module):
  """Encoder (a token backbone such as ViT) plus the VideoMAE decoder."""

  def __init__(self, config, *, rngs: nnx.Rngs):
    method = config.method
    self.encoder = models.build(config, rngs=rngs)
    if not hasattr(self.encoder, "embed") or not hasattr(self.encoder, "grid"):
      raise ConfigError(f"VideoMAE needs a token backbone with embed/encode (like 'vit'), not '{config.model.name}'")
    if config.model.final_norm != "tokens":
      raise ConfigError("VideoMAE decodes normalised tokens: set model.final_norm='tokens'")
    dtype, param_dtype = models.dtypes(config)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    width = method.decoder_width
    self.encoder_to_decoder = layers.Dense(
      self.encoder.width, width, axes=("embed", "decoder_embed"), use_bias=False, **kw
    )
    self.mask_token = layers.param(
      rngs, nnx.initializers.truncated_normal(0.02), (width,), ("decoder_embed",), param_dtype
    )
    self.decoder_pos_embed = nnx.Variable(jnp.asarray(layers.sincos_table(self.encoder.num_tokens, width)))
    self.decoder_blocks = nnx.List(
      [
        layers.Block(
          width,
          method.decoder_heads,
          4 * width,
          qkv_bias=config.model.qkv_bias,
          norm_eps=config.model.norm_eps,
          attention_impl=config.model.attention_impl,
          **kw,
        )
        for _ in range(method.decoder_depth)
      ]
    )
    self.decoder_norm = layers.LayerNorm(width, eps=config.model.norm_eps, **kw)
    patch_dim = int(np.prod(self.encoder.patch_size)) * 3
    self.decoder_head = layers.Dense(width, patch_dim, axes=("decoder_embed", None), **kw)

  def __call__(self, video, visible, masked, rng=None):
    """Predicts the masked tubelets. visible/masked: int32 [B, Nv] / [B, Nm] token indices; `masked`
    are the tubelets the decoder reconstructs (all the encoder's masked ones, or a subset).

    Returns predictions [B, Nm, pt*ph*pw*3] in (pt ph pw c) order.
    """
    return self.decode(self.encoder.encode(self.encoder.embed(video, visible), rng, visible), visible, masked)

  def decode(self, encoded, visible, masked):
    """The decoder alone: the encoder's outputs [B, Nv, D] of the `visible` tubelets -> predictions of `masked`."""
    x = self.encoder_to_decoder(encoded)
    pos = self.decoder_pos_embed[...].astype(x.dtype)
    x_visible = x + pos[visible]
    x_masked = self.mask_token[...].astype(x.dtype) + pos[masked]
    x = jnp.concatenate([x_visible, x_masked], axis=1)
    for block in self.decoder_blocks:
      x = block(x)
    return self.decoder_head(self.decoder_norm(x[:, visible.shape[1] :]))


def tube_mask(rng, batch: int, grid: tuple[int, int, int], ratio: float):
  """VideoMAE tube masking: the same spatial positions are masked in every frame.

  Returns sorted int32 token indices (visible [B, Nv], masked [B, Nm]) into the
  (t h w)-flattened grid.
  """
  t, h, w = grid
  spatial = h * w
  num_masked = int(ratio * spatial)
  order = jnp.argsort(jax.random.uniform(rng, (batch, spatial)), axis=1)
  vis_s = jnp.sort(order[:, num_masked:], axis=1)
  mask_s = jnp.sort(order[:, :num_masked], axis=1)
  frames = jnp.arange(t)[None, :, None] * spatial
  visible = (frames + vis_s[:, None, :]).reshape(batch, -1)
  masked = (frames + mask_s[:, None, :]).reshape(batch, -1)
  return visible.astype(jnp.int32), masked.astype(jnp.int32)


def random_mask(rng, batch: int, grid: tuple[int, int, int], ratio: float):
  """MAE-ST random masking over all space-time tokens; same outputs as `tube_mask`."""
  n = int(np.prod(grid))
  num_masked = int(ratio * n)
  order = jnp.argsort(jax.random.uniform(rng, (batch, n)), axis=1)
  return (
    jnp.sort(order[:, num_masked:], axis=1).astype(jnp.int32),
    jnp.sort(order[:, :num_masked], axis=1).astype(jnp.int32),
  )


def future_mask(rng, batch: int, grid: tuple[int, int, int], ratio: float):
  """3D-CSL's PredMAE: every token of the last int(ratio * T') token frames is masked (at least one
  frame, and one stays visible), so the clip's end is predicted from its beginning. Same outputs as
  `tube_mask`; the same for every clip (`rng` is unused).
  """
  t, h, w = grid
  num_masked = min(max(int(ratio * t), 1), t - 1) * h * w
  tokens = jnp.arange(t * h * w, dtype=jnp.int32)
  split = t * h * w - num_masked
  return jnp.broadcast_to(tokens[:split], (batch, split)), jnp.broadcast_to(tokens[split:], (batch, num_masked))


MASKS = {"tube": tube_mask, "random": random_mask, "future": future_mask}


def running_cell_mask(rng, batch: int, grid: tuple[int, int, int], ratio: float):
  """VideoMAE V2's decoder mask (`RunningCellMaskingGenerator`): bool [B, N], True where the decoder
  does not reconstruct.

  In every 2x2 cell of positions int(4 * ratio) are dropped; the pattern moves on by one position
  each token frame, from a random phase per clip, so each position is reconstructed in a fixed
  share of the frames.
  """
  dropped_per_cell = int(4 * ratio)
  t, h, w = grid
  queue = jnp.arange(4) < dropped_per_cell
  cell = (jnp.arange(h)[:, None] % 2) * 2 + jnp.arange(w)[None, :] % 2  # [h, w], row-major in the 2x2 cell.
  phase = jax.random.randint(rng, (batch, 1, 1, 1), 0, 4)
  return queue[(cell + phase + jnp.arange(t)[:, None, None] + 1) % 4].reshape(batch, -1)


def decoder_subset(rng, masked, dropped, ratio: float):
  """The masked tokens the decoder reconstructs under dual masking: int32 [B, Nm - int(Nm * ratio)].

  masked: int32 [B, Nm] encoder-masked token indices; dropped: bool [B, N] the decoder mask. The
  count is fixed for `jax.jit`: a clip with more of its masked tokens kept by the decoder mask
  reconstructs a random subset of them, one with fewer adds random dropped ones.
  """
  count = masked.shape[1] - int(masked.shape[1] * ratio)
  score = jnp.take_along_axis(dropped, masked, axis=1).astype(jnp.float32) + jax.random.uniform(rng, masked.shape)
  chosen = jnp.sort(jnp.argsort(score, axis=1)[:, :count], axis=1)
  return jnp.take_along_axis(masked, chosen, axis=1)


def pixel_targets(video, patch_size, normalize: bool, eps: float = 1e-6):
  """video [B, T, H, W, C] -> per-tubelet targets [B, N, pt*ph*pw*C].

  With `normalize`, each tubelet is standardised per channel, as VideoMAE does;
  that is invariant to the per-channel input normalisation, so normalised
  inputs give the same targets as raw pixels.
  """
  pt, ph, pw = patch_size
  patches = einops.rearrange(
    video.astype(jnp.float32), "b (t pt) (h ph) (w pw) c -> b (t h w) (pt ph pw) c", pt=pt, ph=ph, pw=pw
  )
  if normalize:
    mean = patches.mean(axis=2, keepdims=True)
    std = jnp.sqrt(patches.var(axis=2, ddof=1, keepdims=True))
    patches = (patches - mean) / (std + eps)
  return einops.rearrange(patches, "b n p c -> b n (p c)")


@registry.METHODS.register("videomae")
class VideoMAE(Method):
  """Masked autoencoding of video tubelets."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "mask_ratio": 0.9,
        "mask_type": "tube",  # "tube" (VideoMAE), "random" (MAE-ST) or "future" (the last frames, PredMAE).
        "decoder_width": 384,
        "decoder_depth": 4,
        "decoder_heads": 6,
        "norm_pix_loss": True,
        # VideoMAE V2's dual masking: the share of the masked tubelets the decoder leaves out (0: off;
        # 0.25, 0.5 or 0.75 with running-cell masking; V2 uses 0.5).
        "decoder_mask_ratio": 0.0,
      }
    )

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    if self.config.method.mask_type not in MASKS:
      raise ConfigError(f"method.mask_type must be one of {list(MASKS)}, not {self.config.method.mask_type!r}")
    ratio = self.config.method.decoder_mask_ratio
    if ratio and not 0 < int(4 * ratio) < 4:
      raise ConfigError(f"method.decoder_mask_ratio must be 0 (off), 0.25, 0.5 or 0.75, not {ratio}")
    model = VideoMAEModel(self.config, rngs=rngs)
    if self.config.method.mask_type == "future" and model.encoder.grid[0] < 2:
      raise ConfigError("future masking needs at least 2 token frames: raise data.num_frames or shorten the tubelet")
    return model

  def loss(self, model, batch, rng, step):
    method = self.config.method
    video = batch["video"]
    mask_rng, drop_rng = jax.random.split(rng)
    visible, masked = MASKS[method.mask_type](mask_rng, video.shape[0], model.encoder.grid, method.mask_ratio)
    if method.decoder_mask_ratio:
      # Keys of their own, so runs without dual masking draw the masks they always drew.
      cell_rng, subset_rng = jax.random.split(jax.random.fold_in(rng, 1))
      dropped = running_cell_mask(cell_rng, video.shape[0], model.encoder.grid, method.decoder_mask_ratio)
      masked = decoder_subset(subset_rng, masked, dropped, method.decoder_mask_ratio)
    pred = model(video, visible, masked, drop_rng).astype(jnp.float32)
    target = pixel_targets(video, model.encoder.patch_size, method.norm_pix_loss)
    target = jnp.take_along_axis(target, masked[..., None], axis=1)
    loss = jnp.mean(jnp.square(pred - target))
    return loss, {"reconstruction_mse": loss}
