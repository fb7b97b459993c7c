"""Audio transformer (AST / VATT's audio tower): a ViT over non-overlapping (time, frequency) patches of a
log-mel spectrogram, with jvssl's transformer blocks; mean-pooled or CLS readout."""

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl.models import layers


class AudioTransformer(nnx.Module):
  """spec [B, frames, mels] (jvssl.data.audio.log_mel) -> {"tokens": [B, N, D], "pooled": [B, D]},
  N = frames/pt * mels/pf, tokens in (time, frequency) order."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        # ViT-B, as AST (ImageNet-initialised) and VATT's audio tower.
        "width": 768,
        "depth": 12,
        "num_heads": 12,
        "mlp_ratio": 4,
        "patch_size": (16, 16),  # (frames, mel bins) of one patch, AST's; non-overlapping here.
        # "sincos": fixed, half the channels for the patch's time row and half for its frequency column (MAE's
        # 2-D table), so nearby times and nearby pitches start alike; "learned": AST's learned table.
        "pos_embed": "sincos",
        "qkv_bias": "all",
        "norm_eps": 1e-6,
        "drop_path_rate": 0.0,
        "attention_impl": "auto",
        "pool": "mean",  # "mean": mean of the output tokens; "cls": a learned CLS token's output (AST).
      }
    )

  def __init__(
    self,
    config,
    *,
    num_frames: int,
    num_mel_bins: int,
    rngs: nnx.Rngs,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
  ):
    pt, pf = config.patch_size
    if num_frames % pt or num_mel_bins % pf:
      raise ValueError(
        f"spectrogram {num_frames}x{num_mel_bins} is not divisible by patch {pt}x{pf}: "
        "change data.audio.seconds or num_mel_bins, or the model's patch_size"
      )
    self.grid = (num_frames // pt, num_mel_bins // pf)
    self.patch_size = (pt, pf)
    self.width = width = config.width
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    self.patch_embed = layers.Dense(pt * pf, width, axes=(None, "embed"), **kw)
    if config.pos_embed == "sincos":
      rows, cols = self.grid
      table = np.concatenate(
        [
          np.repeat(layers.sincos_table(rows, width // 2), cols, axis=0),
          np.tile(layers.sincos_table(cols, width - width // 2), (rows, 1)),
        ],
        axis=1,
      )  # [rows * cols, D]: row r, column c is the token r * cols + c.
      self.pos_embed = nnx.Variable(jnp.asarray(table))
    elif config.pos_embed == "learned":
      self.pos_embed = layers.param(
        rngs, nnx.initializers.truncated_normal(0.02), (self.num_tokens, width), (None, "embed"), param_dtype
      )
    else:
      raise ValueError(f"pos_embed must be 'sincos' or 'learned', not {config.pos_embed!r}")
    if config.pool == "cls":
      self.cls_token = layers.param(rngs, nnx.initializers.truncated_normal(0.02), (width,), ("embed",), param_dtype)
    elif config.pool != "mean":
      raise ValueError(f"pool must be 'mean' or 'cls', not {config.pool!r}")
    self.pool = config.pool
    self.blocks = nnx.List(
      [
        layers.Block(
          width,
          config.num_heads,
          int(config.mlp_ratio * width),
          qkv_bias=config.qkv_bias,
          norm_eps=config.norm_eps,
          drop_path_rate=float(rate),
          attention_impl=config.attention_impl,
          **kw,
        )
        for rate in np.linspace(0.0, config.drop_path_rate, config.depth)
      ]
    )
    self.norm = layers.LayerNorm(width, eps=config.norm_eps, **kw)

  @property
  def num_tokens(self) -> int:
    return int(np.prod(self.grid))

  def embed(self, spec):
    """spec [B, frames, mels] -> patch tokens [B, N, D] with position embeddings added."""
    pt, pf = self.patch_size
    patches = einops.rearrange(spec, "b (t pt) (f pf) -> b (t f) (pt pf)", pt=pt, pf=pf)
    x = self.patch_embed(patches)
    return x + self.pos_embed[...].astype(x.dtype)

  def __call__(self, spec, *, train: bool | None = None, rng=None):
    """train defaults to `rng is not None`, as the video backbones: rng drives stochastic depth."""
    if train is False:
      rng = None
    x = self.embed(spec)
    if self.pool == "cls":
      cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (x.shape[0], 1, self.width))
      x = jnp.concatenate([cls, x], axis=1)
    rngs = [None] * len(self.blocks) if rng is None else list(jax.random.split(rng, len(self.blocks)))
    for block, block_rng in zip(self.blocks, rngs):
      x = block(x, block_rng)
    x = self.norm(x)
    if self.pool == "cls":
      return {"tokens": x[:, 1:], "pooled": x[:, 0]}
    return {"tokens": x, "pooled": x.mean(axis=1)}
