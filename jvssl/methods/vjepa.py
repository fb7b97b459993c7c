"""V-JEPA (Bardes et al., "Revisiting Feature Prediction for Learning Visual Representations from
Video", 2024): a narrow predictor fills in the latents of masked space-time blocks from the context
encoder's visible tokens; the targets are an EMA target encoder's tokens of the whole clip, layer-normed,
and the loss is L1. No pixels, no negatives.

Masking follows V-JEPA's multi-block collator (`src/masks/multiblock3d.py`, configs
`configs/pretrain/vit*.yaml`): two mask sets per clip, 8 short-range blocks of spatial scale 0.15 and
2 long-range blocks of scale 0.7, aspect ratio in [0.75, 1.5], spanning every token frame; a block's
size is drawn once per batch and mask set, its position per clip; the union of a set's blocks is
predicted and the rest is the context. Each set is its own (context, target) pair: the encoder and
the predictor run once per set and the losses are averaged.

V-JEPA truncates every clip's context and target to the smallest count in its batch. Under `jax.jit`
the counts are fixed instead: the 5th percentile of 256 draws of the same sampler, made once when the
method is built (about the minimum over V-JEPA's 24 clips per GPU). A clip with more tokens than that
drops a random few; one with fewer lends tokens of the other kind, never to both sides, so context and
targets never overlap.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.errors import ConfigError
from jvssl.methods import embedding
from jvssl.methods.base import Method
from jvssl.models import layers


def multiblock_mask(
  rng,
  batch: int,
  grid: tuple[int, int, int],
  num_blocks: int,
  spatial_scale: float,
  aspect_ratio: tuple[float, float],
  temporal_scale: float,
) -> jax.Array:
  """The union of `num_blocks` space-time blocks per clip: bool [B, T'*H'*W'] ((t h w) order), True = masked.

  As V-JEPA's `_sample_block_size`: a block covers int(T' * temporal_scale) frames (at least 1) and
  int(H' * W' * spatial_scale) positions shaped by an aspect ratio drawn from `aspect_ratio`, the
  same size for the whole batch; each block of each clip is placed uniformly at random.
  """
  t, h, w = grid
  size_rng, place_rng = jax.random.split(rng)
  ar = aspect_ratio[0] + jax.random.uniform(size_rng) * (aspect_ratio[1] - aspect_ratio[0])
  area = math.floor(h * w * spatial_scale)
  size = jnp.stack(
    [
      jnp.asarray(max(1, math.floor(t * temporal_scale))),
      jnp.clip(jnp.round(jnp.sqrt(area * ar)), 1, h).astype(jnp.int32),
      jnp.clip(jnp.round(jnp.sqrt(area / ar)), 1, w).astype(jnp.int32),
    ]
  )
  # Start of each block along each axis: uniform over the grid - size + 1 positions.
  free = jnp.asarray(grid) - size + 1
  start = jnp.floor(jax.random.uniform(place_rng, (batch, num_blocks, 3)) * free).astype(jnp.int32)
  inside = [
    (jnp.arange(n) >= start[..., a, None]) & (jnp.arange(n) < start[..., a, None] + size[a]) for a, n in enumerate(grid)
  ]  # Each [B, K, n].
  blocks = inside[0][..., :, None, None] & inside[1][..., None, :, None] & inside[2][..., None, None, :]
  return blocks.any(axis=1).reshape(batch, -1)


def split_tokens(rng, masked: jax.Array, num_context: int, num_target: int) -> tuple[jax.Array, jax.Array]:
  """Fixed-size, disjoint (context [B, Nc], target [B, Nt]) int32 token indices from a mask [B, N].

  Tokens are ranked visible before masked, at random within each kind: the first Nc are the context,
  the last Nt the targets (Nc + Nt <= N).
  """
  score = masked.astype(jnp.float32) + jax.random.uniform(rng, masked.shape)
  order = jnp.argsort(score, axis=1).astype(jnp.int32)
  return jnp.sort(order[:, :num_context], axis=1), jnp.sort(order[:, masked.shape[1] - num_target :], axis=1)


def token_counts(grid, mask_set: dict, min_context: int, draws: int = 256, quantile: float = 0.05):
  """(num_context, num_target) for one mask set on `grid`: the `quantile` of each count over `draws` masks."""
  n = int(np.prod(grid))
  keys = jax.random.split(jax.random.key(0), draws)
  masked = np.asarray(jax.jit(jax.vmap(lambda k: multiblock_mask(k, 1, grid, **mask_set)[0].sum()))(keys))
  num_context = max(min(int(np.quantile(n - masked, quantile)), n - 1), min(min_context, n - 1), 1)
  num_target = max(min(int(np.quantile(masked, quantile)), n - num_context), 1)
  return num_context, num_target


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """LayerNorm over the last axis without scale or shift (V-JEPA's F.layer_norm on the targets), float32."""
  x = x.astype(jnp.float32)
  mean = x.mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(jnp.square(x - mean).mean(-1, keepdims=True) + eps)


class TokenPredictor(nnx.Module):
  """A narrow transformer that predicts tokens at given positions from tokens at others.

  Context tokens [B, Nc, in_width] are projected to `width` and given their positions; a learned
  mask token (one per mask set) plus the position stands in for each target; after the blocks and
  a norm, the target tokens are projected to `out_width`. Positions use VideoMAE's fixed sin-cos table
  over the token `grid`, or, when the encoder's are rotary (model.pos_embed='rope', V-JEPA 2), RoPE
  in every block as well.
  """

  def __init__(self, grid, in_width, width, depth, heads, out_width, num_mask_tokens, model_config, **kw):
    rngs, param_dtype = kw["rngs"], kw["param_dtype"]
    self.embed = layers.Dense(in_width, width, axes=("embed", "decoder_embed"), **kw)
    self.mask_tokens = layers.param(
      rngs, nnx.initializers.truncated_normal(0.02), (num_mask_tokens, width), (None, "decoder_embed"), param_dtype
    )
    self.rope = model_config.pos_embed == "rope"
    if not self.rope:
      self.pos_embed = nnx.Variable(jnp.asarray(layers.sincos_table(int(np.prod(grid)), width)))
    block_kw = dict(
      qkv_bias=model_config.qkv_bias,
      norm_eps=model_config.norm_eps,
      attention_impl=model_config.attention_impl,
      rope_grid=tuple(grid) if self.rope else None,
      **kw,
    )
    self.blocks = nnx.List([layers.Block(width, heads, 4 * width, **block_kw) for _ in range(depth)])
    self.norm = layers.LayerNorm(width, eps=model_config.norm_eps, **kw)
    self.proj = layers.Dense(width, out_width, axes=("decoder_embed", None), **kw)

  def __call__(self, context, context_idx, target_idx, mask_token: int = 0):
    """context [B, Nc, in_width], context_idx [B, Nc], target_idx [B, Nt] -> predictions [B, Nt, out_width]."""
    x = self.embed(context)
    queries = jnp.broadcast_to(self.mask_tokens[mask_token].astype(x.dtype), (*target_idx.shape, x.shape[-1]))
    if self.rope:
      ids = jnp.concatenate([context_idx, target_idx], axis=1)
    else:
      pos = self.pos_embed[...].astype(x.dtype)
      x, queries, ids = x + pos[context_idx], queries + pos[target_idx], None
    x = jnp.concatenate([x, queries], axis=1)
    for block in self.blocks:
      x = block(x, ids=ids)
    return self.proj(self.norm(x[:, context_idx.shape[1] :]))


class VJEPAModel(nnx.Module):
  """Context encoder, predictor, and the EMA target encoder (Teacher variables: no gradients, no optimizer)."""

  def __init__(self, config, *, rngs: nnx.Rngs):
    m = config.method
    self.encoder = models.build(config, rngs=rngs)
    if not hasattr(self.encoder, "embed") or not hasattr(self.encoder, "grid"):
      raise ConfigError(f"V-JEPA needs a token backbone with embed/encode (like 'vit'), not '{config.model.name}'")
    kw = dict(models.dtype_kw(config), rngs=rngs)
    width = self.encoder.width
    self.predictor = TokenPredictor(
      self.encoder.grid,
      width,
      m.predictor_width,
      m.predictor_depth,
      m.predictor_heads,
      width,
      len(m.num_blocks),
      config.model,
      **kw,
    )
    self.target_encoder = embedding.momentum_copy(self.encoder)


@registry.METHODS.register("vjepa")
class VJEPA(Method):
  """Prediction of an EMA target encoder's latents of masked space-time blocks (V-JEPA)."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        # One entry per mask set (V-JEPA's short- and long-range blocks).
        "num_blocks": (8, 2),
        "spatial_scale": (0.15, 0.7),
        "aspect_ratio": (0.75, 1.5),
        "temporal_scale": 1.0,  # Fraction of the token frames each block spans.
        # Fewest context tokens (V-JEPA's collator resamples below its min_keep of 10).
        "min_context": 10,
        # V-JEPA ViT-L/H: 12 blocks of width 384, with the encoder's head count (ViT-L 16; ViT-B, the default, 12).
        "predictor_width": 384,
        "predictor_depth": 12,
        "predictor_heads": 12,
        # Target encoder momentum, linear from the first to the second over the run (V-JEPA's ema).
        "ema": (0.998, 1.0),
      }
    )

  def __init__(self, config, run):
    super().__init__(config, run)
    m = config.method
    if len(m.num_blocks) != len(m.spatial_scale):
      raise ConfigError(
        f"method.num_blocks {tuple(m.num_blocks)} and method.spatial_scale {tuple(m.spatial_scale)}"
        " need one entry per mask set"
      )
    if "patch_size" not in config.model:
      raise ConfigError(f"V-JEPA needs a token backbone with embed/encode (like 'vit'), not '{config.model.name}'")
    pt, ph, pw = config.model.patch_size
    height, width = layers.image_hw(config.data.image_size)
    self.grid = (config.data.num_frames // pt, height // ph, width // pw)
    self.counts = [token_counts(self.grid, mask_set, m.min_context) for mask_set in self.mask_sets()]

  def mask_sets(self) -> list[dict]:
    m = self.config.method
    return [
      dict(num_blocks=k, spatial_scale=s, aspect_ratio=tuple(m.aspect_ratio), temporal_scale=m.temporal_scale)
      for k, s in zip(m.num_blocks, m.spatial_scale)
    ]

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return VJEPAModel(self.config, rngs=rngs)

  def momentum(self, step: jax.Array) -> jax.Array:
    start, end = self.config.method.ema
    return start + (end - start) * jnp.minimum(step.astype(jnp.float32) / max(self.run.num_steps, 1), 1.0)

  def loss(self, model, batch, rng, step):
    video = batch["video"]
    b = video.shape[0]
    targets = jax.lax.stop_gradient(layer_norm(model.target_encoder(video, train=False)["tokens"]))
    metrics, total = {}, 0.0
    for i, (mask_set, (nc, nt)) in enumerate(zip(self.mask_sets(), self.counts)):
      mask_rng, split_rng, drop_rng = jax.random.split(jax.random.fold_in(rng, i), 3)
      masked = multiblock_mask(mask_rng, b, self.grid, **mask_set)
      context, target = split_tokens(split_rng, masked, nc, nt)
      z = model.encoder.encode(model.encoder.embed(video, context), drop_rng, context)
      pred = model.predictor(z, context, target, i).astype(jnp.float32)
      loss = jnp.mean(jnp.abs(pred - jnp.take_along_axis(targets, target[..., None], axis=1)))
      metrics[f"l1/mask_set_{i}"] = loss
      metrics[f"masked_fraction/mask_set_{i}"] = masked.mean()
      total += loss / len(self.counts)
    # A collapsed target encoder gives every token the same latent: watch their spread over tokens.
    metrics["target_token_std"] = targets.std(axis=1).mean()
    metrics["ema"] = self.momentum(step)
    return total, metrics

  def update(self, model, step):
    embedding.update_teacher(model.target_encoder, model.encoder, self.momentum(step))
