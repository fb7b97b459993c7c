"""Video ViT: tubelet embedding, fixed or learned position embeddings, pre-norm blocks,
joint space-time attention (ViViT model 1 / VideoMAE / MAE-ST)."""

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.models import layers

# name: (width, depth, heads, mlp_dim), as in ViT / VideoMAE / VideoMAE v2.
VARIANTS = {
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "H": (1280, 32, 16, 5120),
    "g": (1408, 40, 16, 6144),
}


def dims(config) -> tuple[int, int, int, int]:
  """(width, depth, heads, mlp_dim): the variant's, with any non-zero field overriding it."""
  if config.variant not in VARIANTS:
    raise ValueError(f"unknown ViT variant {config.variant!r}; known: {', '.join(VARIANTS)}")
  width, depth, heads, mlp = VARIANTS[config.variant]
  width = config.width or width
  mlp = config.mlp_dim or (mlp if not config.width else 4 * width)
  return width, config.depth or depth, config.num_heads or heads, mlp


@registry.MODELS.register("vit")
class ViT(nnx.Module):
  """video [B, T, H, W, 3] -> {"tokens": [B, N, D], "pooled": [B, D]}, N = T/pt * H/ph * W/pw."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict({
        "variant": "B",
        # Non-zero values override the variant's shape.
        "width": 0, "depth": 0, "num_heads": 0, "mlp_dim": 0,
        "patch_size": (2, 16, 16),  # (frames, height, width) of one tubelet.
        "pos_embed": "sincos",  # "sincos" (VideoMAE's fixed table) or "learned".
        "qkv_bias": "qv",  # VideoMAE's q and v biases; "all" for standard ViTs.
        "norm_eps": 1e-6,
        # "tokens": LayerNorm on every output token (pretraining layout, as MAE/VideoMAE);
        # "pooled": on the mean-pooled embedding only (VideoMAE fine-tuning's fc_norm).
        "final_norm": "tokens",
        "drop_path_rate": 0.0,
        "attention_impl": "auto",
        "remat": False,  # Recompute each block's activations in the backward pass.
    })

  def __init__(self, config, *, num_frames: int, image_size: int, rngs: nnx.Rngs,
               dtype=jnp.float32, param_dtype=jnp.float32):
    width, depth, heads, mlp = dims(config)
    pt, ph, pw = config.patch_size
    if num_frames % pt or image_size % ph or image_size % pw:
      raise ValueError(f"input {num_frames}x{image_size}x{image_size} is not divisible by tubelet {pt}x{ph}x{pw}")
    self.grid = (num_frames // pt, image_size // ph, image_size // pw)
    self.patch_size = tuple(config.patch_size)
    self.width = width
    num_tokens = int(np.prod(self.grid))
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    self.patch_embed = layers.param(rngs, layers.xavier((0, 1, 2, 3), 4), (pt, ph, pw, 3, width),
                                    (None, None, None, None, "embed"), param_dtype)
    self.patch_bias = layers.param(rngs, nnx.initializers.zeros, (width,), ("embed",), param_dtype)
    if config.pos_embed == "sincos":
      self.pos_embed = nnx.Variable(jnp.asarray(layers.sincos_table(num_tokens, width)))
    elif config.pos_embed == "learned":
      self.pos_embed = layers.param(rngs, nnx.initializers.truncated_normal(0.02), (num_tokens, width),
                                    (None, "embed"), param_dtype)
    else:
      raise ValueError(f"pos_embed must be 'sincos' or 'learned', not {config.pos_embed!r}")
    rates = np.linspace(0.0, config.drop_path_rate, depth)
    self.blocks = nnx.List([
        layers.Block(width, heads, mlp, qkv_bias=config.qkv_bias, norm_eps=config.norm_eps,
              drop_path_rate=float(rate), attention_impl=config.attention_impl, **kw)
        for rate in rates])
    if config.final_norm not in ("tokens", "pooled"):
      raise ValueError(f"final_norm must be 'tokens' or 'pooled', not {config.final_norm!r}")
    self.final_norm = config.final_norm
    self.norm = layers.LayerNorm(width, eps=config.norm_eps, **kw)
    self.remat = config.remat
    self.dtype = dtype

  @property
  def num_tokens(self) -> int:
    return int(np.prod(self.grid))

  def embed(self, video):
    """video [B, T, H, W, C] -> tokens [B, N, D] with position embeddings added."""
    pt, ph, pw = self.patch_size
    patches = einops.rearrange(video, "b (t pt) (h ph) (w pw) c -> b (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)
    kernel = self.patch_embed[...].reshape(-1, self.width).astype(self.dtype)
    x = patches.astype(self.dtype) @ kernel + self.patch_bias[...].astype(self.dtype)
    return x + self.pos_embed[...].astype(self.dtype)

  def encode(self, tokens, rng=None):
    """Runs the blocks (and the token norm) on tokens [B, n, D] (n may be a visible subset)."""
    rngs = [None] * len(self.blocks) if rng is None else list(jax.random.split(rng, len(self.blocks)))
    x = tokens
    for block, block_rng in zip(self.blocks, rngs):
      x = nnx.remat(lambda b, y, r: b(y, r))(block, x, block_rng) if self.remat else block(x, block_rng)
    return self.norm(x) if self.final_norm == "tokens" else x

  def __call__(self, video, *, rng=None):
    tokens = self.encode(self.embed(video), rng)
    pooled = tokens.mean(axis=1)
    return {"tokens": tokens, "pooled": self.norm(pooled) if self.final_norm == "pooled" else pooled}
