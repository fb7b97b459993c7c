"""MViTv2 (Li et al., 2022) as torchvision's mvit_v2_s builds it: multi-scale stages of pooling
attention with residual pooling and decomposed relative position embeddings, and a CLS token.

Variant "S" (stage depths 1-2-11-2) has 34.5M parameters with a 400-class head at 16x224x224,
as torchvision's mvit_v2_s; "B" (2-3-16-3) is the paper's MViTv2-B. Each stage doubles the
width and the heads and halves the spatial grid (strided query pooling in its first block);
keys and values are pooled with a stride that keeps their grid at the first stage's 7x7.
Channels-last: video [B, T, H, W, 3].
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry, sharding
from jvssl.models import conv, layers

DEPTHS = {"S": (1, 2, 11, 2), "B": (2, 3, 16, 3)}


def block_settings(config) -> list[dict]:
  """Per block: input and output width, heads, query stride and key/value stride (torchvision's MSBlockConfig)."""
  depths = tuple(config.depths) or DEPTHS[config.variant]
  settings, kv_stride = [], list(config.kv_stride)
  width, heads = config.width, config.num_heads
  for stage, depth in enumerate(depths):
    for j in range(depth):
      first = stage > 0 and j == 0
      q_stride = (1, 2, 2) if first else (1, 1, 1)
      if first:
        kv_stride = [max(s // q, 1) for s, q in zip(kv_stride, q_stride)]
      settings.append(
        {
          "in": width,
          "out": width * 2 if first else width,
          "heads": heads * 2 if first else heads,
          "q_stride": q_stride,
          "kv_stride": tuple(kv_stride),
        }
      )
      if first:
        width, heads = width * 2, heads * 2
  return settings


def _pooled_size(n: int, stride: int) -> int:
  return conv.out_size(n, 3, stride, 1)  # Pooling kernels are 3, padded by 1.


def rel_pos_index(q_size: int, k_size: int) -> np.ndarray:
  """Index into a relative-position table of query i and key j (MViTv2, grids of different sizes)."""
  q_ratio, k_ratio = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
  dist = np.arange(q_size)[:, None] * q_ratio - (np.arange(k_size)[None, :] + (1.0 - k_size)) * k_ratio
  return dist.astype(np.int64)


class Pool(nnx.Module):
  """Depthwise strided 3x3x3 conv over each head's token grid, then LayerNorm; the CLS token passes by the conv."""

  def __init__(self, head_dim, stride, *, norm_eps, dtype, param_dtype, rngs):
    self.kernel = layers.param(
      rngs,
      nnx.initializers.lecun_normal(in_axis=(0, 1, 2, 3), out_axis=4),
      (3, 3, 3, 1, head_dim),
      (None, None, None, None, None),
      param_dtype,
    )
    self.norm = layers.LayerNorm(head_dim, eps=norm_eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stride, self.dtype = tuple(stride), dtype

  def __call__(self, x, thw):
    """x [B, N, H, D] with N = 1 + T*H*W -> ([B, 1 + T'*H'*W', H, D], (T', H', W'))."""
    b, _, h, d = x.shape
    cls, grid = x[:, :1], x[:, 1:]
    grid = grid.reshape(b, *thw, h, d).transpose(0, 4, 1, 2, 3, 5).reshape(b * h, *thw, d)
    grid = jax.lax.conv_general_dilated(
      grid.astype(self.dtype),
      self.kernel[...].astype(self.dtype),
      self.stride,
      [(1, 1)] * 3,
      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
      feature_group_count=d,
    )
    new_thw = grid.shape[1:4]
    grid = grid.reshape(b, h, -1, d).transpose(0, 2, 1, 3)
    return self.norm(jnp.concatenate([cls.astype(grid.dtype), grid], axis=1)), new_thw


class MultiscaleAttention(nnx.Module):
  def __init__(self, s: dict, input_grid, *, norm_eps, dtype, param_dtype, rngs):
    """input_grid: the (T, H, W) token grid entering the block."""
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    dim, self.heads = s["out"], s["heads"]
    self.head_dim = dim // self.heads
    self.qkv = layers.Dense(s["in"], 3 * dim, axes=("embed", None), **kw)
    self.proj = layers.Dense(dim, dim, axes=(None, "embed"), **kw)
    pool_kw = dict(norm_eps=norm_eps, **kw)
    self.pool_q = Pool(self.head_dim, s["q_stride"], **pool_kw)
    self.pool_k = Pool(self.head_dim, s["kv_stride"], **pool_kw)
    self.pool_v = Pool(self.head_dim, s["kv_stride"], **pool_kw)
    # One entry per offset between the query and key grids this block sees. torchvision sizes its
    # tables from floor-divided input sizes instead and interpolates them when they do not fit (at
    # 112 px: 5 entries for grids of 4); the same interpolation makes its weights fit these tables
    # (`rel_pos_bias`, `convert.torchvision_mvit`, `jvssl.initialize`).
    q_grid = [_pooled_size(n, st) for n, st in zip(input_grid, s["q_stride"])]
    k_grid = [_pooled_size(n, st) for n, st in zip(input_grid, s["kv_stride"])]
    t, h, w = (2 * max(q, k) - 1 for q, k in zip(q_grid, k_grid))
    init = nnx.initializers.truncated_normal(0.02)
    self.rel_pos_t = layers.param(rngs, init, (t, self.head_dim), (None, None), param_dtype)
    self.rel_pos_h = layers.param(rngs, init, (h, self.head_dim), (None, None), param_dtype)
    self.rel_pos_w = layers.param(rngs, init, (w, self.head_dim), (None, None), param_dtype)
    self.dtype = dtype

  def rel_pos_bias(self, q, q_thw, k_thw):
    """Decomposed relative position logits [B, H, Nq, Nk] (zero for the CLS row and column)."""
    b = q.shape[0]
    tables = []
    for table, qn, kn in zip((self.rel_pos_t, self.rel_pos_h, self.rel_pos_w), q_thw, k_thw):
      # Clips of another size than the model was built for: interpolated as torchvision does.
      table = layers.resize_axis(table[...], 0, 2 * max(qn, kn) - 1, "linear")
      tables.append(table.astype(self.dtype)[rel_pos_index(qn, kn)])
    rt, rh, rw = tables
    r_q = q[:, 1:].reshape(b, *q_thw, self.heads, self.head_dim)
    t = jnp.einsum("bthwnc,tkc->bnthwk", r_q, rt)
    h = jnp.einsum("bthwnc,hkc->bnthwk", r_q, rh)
    w = jnp.einsum("bthwnc,wkc->bnthwk", r_q, rw)
    bias = t[..., :, None, None] + h[..., None, :, None] + w[..., None, None, :]
    bias = bias.reshape(b, self.heads, int(np.prod(q_thw)), int(np.prod(k_thw)))
    return jnp.pad(bias, ((0, 0), (0, 0), (1, 0), (1, 0)))

  def __call__(self, x, thw):
    b, n, _ = x.shape
    q, k, v = jnp.moveaxis(self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim), 2, 0)
    k, k_thw = self.pool_k(k, thw)
    v, _ = self.pool_v(v, thw)
    q, q_thw = self.pool_q(q, thw)
    bias = self.rel_pos_bias(q, q_thw, k_thw)
    out = jax.nn.dot_product_attention(q, k, v, bias=bias.astype(q.dtype))
    # Residual pooling (MViTv2): the pooled query is added to the attention output, except at the CLS token.
    out = out + jnp.concatenate([jnp.zeros_like(q[:, :1]), q[:, 1:]], axis=1)
    return self.proj(out.reshape(b, out.shape[1], -1)), q_thw


class MultiscaleBlock(nnx.Module):
  def __init__(self, s: dict, input_grid, *, mlp_ratio, norm_eps, drop_path_rate, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = layers.LayerNorm(s["in"], eps=norm_eps, **kw)
    self.attn = MultiscaleAttention(s, input_grid, norm_eps=norm_eps, **kw)
    self.norm2 = layers.LayerNorm(s["out"], eps=norm_eps, **kw)
    self.mlp = layers.Mlp(s["out"], int(mlp_ratio * s["out"]), **kw)
    # The shortcut changes width by a projection of the normalised input (torchvision's proj_after_attn).
    self.project = layers.Dense(s["in"], s["out"], axes=("embed", None), **kw) if s["in"] != s["out"] else None
    q = s["q_stride"]
    self.skip_kernel = tuple(k + 1 if k > 1 else k for k in q) if max(q) > 1 else None
    self.q_stride = q
    self.drop_path_rate = drop_path_rate

  def __call__(self, x, thw, rng=None):
    rngs = (None, None) if rng is None else tuple(jax.random.split(rng))
    normed = self.norm1(x)
    attn, new_thw = self.attn(normed, thw)
    skip = x if self.project is None else self.project(normed)
    if self.skip_kernel is not None:
      b, _, c = skip.shape
      grid = conv.max_pool(
        skip[:, 1:].reshape(b, *thw, c), self.skip_kernel, self.q_stride, tuple(k // 2 for k in self.skip_kernel)
      )
      skip = jnp.concatenate([skip[:, :1], grid.reshape(b, -1, c)], axis=1)
    x = skip + layers.drop_path(attn, self.drop_path_rate, rngs[0])
    x = x + layers.drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, rngs[1])
    return sharding.constrain(x, ("batch", "act_seq", None)), new_thw


@registry.MODELS.register("mvit")
class MViT(nnx.Module):
  """video [B, T, H, W, 3] -> {"tokens": [B, T'H'W', C] (final grid), "pooled": [B, C] (the CLS token)}."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "variant": "S",  # "S" or "B": stage depths from DEPTHS.
        "depths": (),  # Stage depths overriding the variant's.
        "width": 96,  # First stage's width; each stage doubles it.
        "num_heads": 1,  # First stage's heads; each stage doubles them.
        "mlp_ratio": 4.0,
        "kv_stride": (1, 8, 8),  # First stage's key/value pooling stride.
        "norm_eps": 1e-6,
        "drop_path_rate": 0.0,  # Stochastic depth, rising linearly to this over the blocks.
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
    if config.variant not in DEPTHS and not config.depths:
      raise ValueError(f"unknown MViTv2 variant {config.variant!r}; known: {', '.join(DEPTHS)}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    settings = block_settings(config)
    height, width = layers.image_hw(image_size)
    self.patch_embed = conv.Conv3d(3, config.width, (3, 7, 7), stride=(2, 4, 4), padding=(1, 3, 3), use_bias=True, **kw)
    grid = self.patch_embed.out_shape(num_frames, height, width)
    self.cls_token = layers.param(
      rngs, nnx.initializers.truncated_normal(0.02), (config.width,), ("embed",), param_dtype
    )
    blocks, n = [], len(settings)
    for i, s in enumerate(settings):
      rate = config.drop_path_rate * i / max(n - 1, 1)
      blocks.append(
        MultiscaleBlock(s, grid, mlp_ratio=config.mlp_ratio, norm_eps=config.norm_eps, drop_path_rate=rate, **kw)
      )
      grid = tuple(_pooled_size(a, st) for a, st in zip(grid, s["q_stride"]))
    self.blocks = nnx.List(blocks)
    self.norm = layers.LayerNorm(settings[-1]["out"], eps=config.norm_eps, **kw)
    self.width = settings[-1]["out"]
    self.grid = grid
    if min(self.grid) < 1:
      raise ValueError(f"input {num_frames}x{height}x{width} is too small for MViTv2")

  def __call__(self, video, *, rng=None, train: bool | None = None):
    if train is False:
      rng = None  # Evaluation: no stochastic depth.
    x = self.patch_embed(video)
    b, c = x.shape[0], x.shape[-1]
    thw = x.shape[1:4]
    x = x.reshape(b, -1, c)
    x = jnp.concatenate([jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, c)), x], axis=1)
    rngs = [None] * len(self.blocks) if rng is None else list(jax.random.split(rng, len(self.blocks)))
    for block, block_rng in zip(self.blocks, rngs):
      x, thw = block(x, thw, rng=block_rng)
    x = self.norm(x)
    return {"tokens": x[:, 1:], "pooled": x[:, 0]}
