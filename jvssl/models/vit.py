"""Video ViT: tubelet embedding, fixed or learned position embeddings, pre-norm blocks with
joint space-time attention (ViViT model 1 / VideoMAE / MAE-ST) or factorised spatial-then-
temporal attention (ViViT model 3), mean-pooled, CLS or first-token readout."""

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.models import layers

REMAT_POLICIES = {
  "none": None,
  "full": None,  # nnx.remat without a policy saves nothing.
  "dots": jax.checkpoint_policies.dots_saveable,
  "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

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
    return ConfigDict(
      {
        "variant": "B",
        # Non-zero values override the variant's shape.
        "width": 0,
        "depth": 0,
        "num_heads": 0,
        "mlp_dim": 0,
        "patch_size": (2, 16, 16),  # (frames, height, width) of one tubelet.
        # "sincos" (VideoMAE's fixed table), "learned", or "rope": no table, V-JEPA 2's 3-D rotary
        # embedding of queries and keys in every block (methods pass the kept tokens' ids to `encode`).
        "pos_embed": "sincos",
        "qkv_bias": "qv",  # VideoMAE's q and v biases; "all" for standard ViTs.
        "norm_eps": 1e-6,
        "activation": "gelu",  # Of the MLPs: "gelu" (exact), or "quick_gelu" for OpenAI CLIP weights.
        # A LayerNorm on the embedded tokens (CLS included) before the first block: CLIP's ln_pre.
        "pre_norm": False,
        # "tokens": LayerNorm on every output token (pretraining layout, as MAE/VideoMAE);
        # "pooled": on the mean-pooled embedding only (VideoMAE fine-tuning's fc_norm).
        "final_norm": "tokens",
        "drop_path_rate": 0.0,
        "attention_impl": "auto",
        # "joint": every token attends to every token; "factorised": ViViT model 3, attention within
        # each frame then along time at each position (needs whole frames: no random masking).
        "attention": "joint",
        # "mean": pooled = mean of the output tokens (VideoMAE); "cls": a learned CLS token's output;
        # "first": the first patch token's output (VideoMAE classifiers saved with use_mean_pooling=False).
        "pool": "mean",
        # Activation checkpointing per block: "none", "full" (recompute everything in the backward
        # pass), "dots" (keep matmul outputs, recompute the rest), "dots_no_batch" (keep only weight
        # matmuls without a batch dimension, as MaxText's default).
        "remat": "none",
      }
    )

  def __init__(
    self,
    config,
    *,
    num_frames: int,
    image_size: int | tuple[int, int],
    rngs: nnx.Rngs,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
  ):
    width, depth, heads, mlp = dims(config)
    pt, ph, pw = config.patch_size
    height, image_width = layers.image_hw(image_size)
    if num_frames % pt or height % ph or image_width % pw:
      raise ValueError(f"input {num_frames}x{height}x{image_width} is not divisible by tubelet {pt}x{ph}x{pw}")
    self.grid = (num_frames // pt, height // ph, image_width // pw)
    self.patch_size = tuple(config.patch_size)
    self.width = width
    num_tokens = int(np.prod(self.grid))
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    self.patch_embed = layers.param(
      rngs, layers.xavier((0, 1, 2, 3), 4), (pt, ph, pw, 3, width), (None, None, None, None, "embed"), param_dtype
    )
    self.patch_bias = layers.param(rngs, nnx.initializers.zeros, (width,), ("embed",), param_dtype)
    self.rope = config.pos_embed == "rope"
    if config.pos_embed == "sincos":
      self.pos_embed = nnx.Variable(jnp.asarray(layers.sincos_table(num_tokens, width)))
    elif config.pos_embed == "learned":
      self.pos_embed = layers.param(
        rngs, nnx.initializers.truncated_normal(0.02), (num_tokens, width), (None, "embed"), param_dtype
      )
    elif self.rope and (config.pool == "cls" or config.attention == "factorised"):
      raise ValueError("pos_embed='rope' turns tokens by their grid position: no CLS token, no factorised attention")
    elif not self.rope:
      raise ValueError(f"pos_embed must be 'sincos', 'learned' or 'rope', not {config.pos_embed!r}")
    if config.pool == "cls":
      if config.attention == "factorised":
        raise ValueError("a CLS token belongs to no frame: use model.pool='mean' with factorised attention")
      self.cls_token = layers.param(rngs, nnx.initializers.truncated_normal(0.02), (width,), ("embed",), param_dtype)
    elif config.pool not in ("mean", "first"):
      raise ValueError(f"pool must be 'mean', 'cls' or 'first', not {config.pool!r}")
    self.pool = config.pool
    self.pre_norm = layers.LayerNorm(width, eps=config.norm_eps, **kw) if config.pre_norm else None
    block_kw = dict(
      qkv_bias=config.qkv_bias,
      norm_eps=config.norm_eps,
      attention_impl=config.attention_impl,
      activation=config.activation,
      **kw,
    )
    if config.attention == "joint":
      rope_grid = self.grid if self.rope else None
      make_block = lambda rate: layers.Block(width, heads, mlp, drop_path_rate=rate, rope_grid=rope_grid, **block_kw)
    elif config.attention == "factorised":
      make_block = lambda rate: layers.FactorisedBlock(
        width, heads, mlp, num_frames=self.grid[0], drop_path_rate=rate, **block_kw
      )
    else:
      raise ValueError(f"attention must be 'joint' or 'factorised', not {config.attention!r}")
    self.blocks = nnx.List([make_block(float(rate)) for rate in np.linspace(0.0, config.drop_path_rate, depth)])
    if config.final_norm not in ("tokens", "pooled"):
      raise ValueError(f"final_norm must be 'tokens' or 'pooled', not {config.final_norm!r}")
    self.final_norm = config.final_norm
    self.norm = layers.LayerNorm(width, eps=config.norm_eps, **kw)
    if config.remat not in REMAT_POLICIES:
      raise ValueError(f"remat must be one of {', '.join(REMAT_POLICIES)}, not {config.remat!r}")
    self.remat = config.remat
    self.dtype = dtype

  @property
  def num_tokens(self) -> int:
    return int(np.prod(self.grid))

  def embed(self, video, keep=None):
    """video [B, T, H, W, C] -> tokens [B, N, D] with position embeddings added.

    keep: optional int32 [B, n] token indices (VideoMAE's visible tokens) -> [B, n, D]. The
    patches are picked before the projection, which then costs n/N of the full one, and the
    backward pass scatters no token gradients back to all N positions (the pick is on data).
    With pos_embed='rope' nothing is added: pass the same `keep` to `encode` as its ids.
    """
    pt, ph, pw = self.patch_size
    patches = einops.rearrange(video, "b (t pt) (h ph) (w pw) c -> b (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)
    if keep is not None:
      patches = jnp.take_along_axis(patches, keep[..., None], axis=1)
    kernel = self.patch_embed[...].reshape(-1, self.width).astype(self.dtype)
    x = patches.astype(self.dtype) @ kernel + self.patch_bias[...].astype(self.dtype)
    return self.add_positions(x, keep)

  def add_positions(self, x, ids=None):
    """Tokens x [B, n, D] plus the table's rows `ids` [B, n] (default: all N in order); x as it is with RoPE."""
    if self.rope:
      return x
    pos = self.pos_embed[...].astype(x.dtype)
    return x + (pos if ids is None else pos[ids])

  def encode(self, tokens, rng=None, ids=None):
    """Runs the blocks (and the token norm) on tokens [B, n, D] (n may be a visible subset).

    ids: int [B, n] grid index of each token, which RoPE turns queries and keys by (default: 0..n-1,
    the whole grid in order); the other position embeddings were added by `embed` and ignore it.
    """
    return self._encode(tokens, rng, ids)[1]

  def _encode(self, tokens, rng, ids=None):
    """-> (CLS output [B, D] or None, token outputs [B, n, D])."""
    rngs = [None] * len(self.blocks) if rng is None else list(jax.random.split(rng, len(self.blocks)))
    x = self._stem(tokens)
    run = (lambda b, y, r, i: b(y, r, i)) if self.rope else (lambda b, y, r, i: b(y, r))
    if self.remat != "none":
      run = nnx.remat(run, policy=REMAT_POLICIES[self.remat])
    for block, block_rng in zip(self.blocks, rngs):
      x = run(block, x, block_rng, ids)
    if self.final_norm == "tokens":
      x = self.norm(x)
    return (x[:, 0], x[:, 1:]) if self.pool == "cls" else (None, x)

  def _stem(self, tokens):
    """Tokens [B, n, D] as the first block takes them: the CLS token in front when pool='cls', then the
    pre-norm when there is one."""
    if self.pool == "cls":
      cls = jnp.broadcast_to(self.cls_token[...].astype(tokens.dtype), (tokens.shape[0], 1, tokens.shape[-1]))
      tokens = jnp.concatenate([cls, tokens], axis=1)
    return tokens if self.pre_norm is None else self.pre_norm(tokens)

  def last_attention(self, video):
    """video [B, T, H, W, C] -> the last block's attention weights [B, heads, N, N] over the patch tokens (a CLS
    token's row and column left out); joint attention only."""
    if not isinstance(self.blocks[-1], layers.Block):
      raise ValueError("attention weights are drawn for joint attention only, not factorised")
    x = self._stem(self.embed(video))
    for block in self.blocks[:-1]:
      x = block(x)
    last = self.blocks[-1]
    weights = last.attn.weights(last.norm1(x))
    return weights[:, :, 1:, 1:] if self.pool == "cls" else weights

  def __call__(self, video, *, rng=None, train: bool | None = None):
    if train is False:
      rng = None  # Evaluation: no stochastic depth.
    cls, tokens = self._encode(self.embed(video), rng)
    pooled = {"cls": cls, "first": tokens[:, 0], "mean": tokens.mean(axis=1)}[self.pool]
    return {"tokens": tokens, "pooled": self.norm(pooled) if self.final_norm == "pooled" else pooled}
