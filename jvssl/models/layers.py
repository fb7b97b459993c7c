"""Transformer parts shared by the ViT encoder, the VideoMAE decoder and later backbones.

Weights are kept in the layout that makes the logical axes explicit
(`[embed, 3, heads, head_dim]` for the fused q/k/v projection), so tensor
parallelism over heads is a sharding rule, and so checkpoint import is a reshape.
"""

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jvssl import sharding
from jvssl.models.attention import dot_product_attention


def param(rngs: nnx.Rngs, init, shape, axes, dtype) -> nnx.Param:
  """A parameter initialised with `init` and annotated with logical `axes`."""
  return nnx.Param(init(rngs.params(), shape, dtype), out_sharding=axes)


def xavier(in_axis=0, out_axis=-1):
  return nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=in_axis, out_axis=out_axis)


class Dense(nnx.Module):
  """y = x @ W + b with logical axes on W; W: [in, out]."""

  def __init__(
    self,
    in_features,
    out_features,
    *,
    axes=("embed", "mlp"),
    use_bias=True,
    kernel_init=None,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.kernel = param(rngs, kernel_init or xavier(), (in_features, out_features), axes, param_dtype)
    self.bias = param(rngs, nnx.initializers.zeros, (out_features,), axes[-1:], param_dtype) if use_bias else None
    self.dtype = dtype

  def __call__(self, x):
    y = jnp.einsum("...i,io->...o", x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class LayerNorm(nnx.Module):
  """LayerNorm computed in float32 (bf16 statistics drift), returned in `dtype`."""

  def __init__(self, dim, *, eps=1e-6, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.scale = param(rngs, nnx.initializers.ones, (dim,), ("embed",), param_dtype)
    self.bias = param(rngs, nnx.initializers.zeros, (dim,), ("embed",), param_dtype)
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x):
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
    return y.astype(self.dtype)


class Attention(nnx.Module):
  """Multi-head self-attention over tokens [B, N, D].

  qkv_bias: "all" (standard), "qv" (VideoMAE/BEiT: query and value biases, no
  key bias, which a softmax ignores anyway) or "none".
  """

  def __init__(
    self,
    dim,
    num_heads,
    *,
    qkv_bias="all",
    attention_impl="auto",
    rope_grid: tuple[int, int, int] | None = None,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    if dim % num_heads:
      raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
    head_dim = dim // num_heads
    self.qkv = param(
      rngs, xavier(0, (1, 2, 3)), (dim, 3, num_heads, head_dim), ("embed", None, "heads", "kv"), param_dtype
    )
    self.qkv_bias_kind = qkv_bias
    zeros = nnx.initializers.zeros
    if qkv_bias == "all":
      self.qkv_bias = param(rngs, zeros, (3, num_heads, head_dim), (None, "heads", "kv"), param_dtype)
    elif qkv_bias == "qv":
      self.q_bias = param(rngs, zeros, (num_heads, head_dim), ("heads", "kv"), param_dtype)
      self.v_bias = param(rngs, zeros, (num_heads, head_dim), ("heads", "kv"), param_dtype)
    elif qkv_bias != "none":
      raise ValueError(f"qkv_bias must be 'all', 'qv' or 'none', not {qkv_bias!r}")
    self.proj = param(rngs, xavier((0, 1), 2), (num_heads, head_dim, dim), ("heads", "kv", "embed"), param_dtype)
    self.proj_bias = param(rngs, zeros, (dim,), ("embed",), param_dtype)
    self.attention_impl = attention_impl
    self.rope_grid = tuple(rope_grid) if rope_grid else None
    self.dtype = dtype

  def qkv_bias_value(self):
    if self.qkv_bias_kind == "all":
      return self.qkv_bias[...]
    if self.qkv_bias_kind == "qv":
      return jnp.stack([self.q_bias[...], jnp.zeros_like(self.q_bias[...]), self.v_bias[...]])
    return None

  def _qkv(self, x, ids):
    """Queries, keys and values [B, N, heads, head_dim] of tokens x [B, N, D], RoPE applied."""
    qkv = jnp.einsum("bnd,dthk->tbnhk", x.astype(self.dtype), self.qkv[...].astype(self.dtype))
    bias = self.qkv_bias_value()
    if bias is not None:
      qkv = qkv + bias[:, None, None].astype(self.dtype)
    q, k, v = qkv
    if self.rope_grid:
      ids = jnp.arange(x.shape[1])[None] if ids is None else ids
      q, k = rope_3d(q, ids, self.rope_grid), rope_3d(k, ids, self.rope_grid)
    return q, k, v

  def weights(self, x, ids=None):
    """The softmax attention weights [B, heads, N queries, N keys] of tokens x [B, N, D]: for pictures, as the
    attention kernels never form them."""
    q, k, _ = self._qkv(x, ids)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / np.sqrt(q.shape[-1])
    return jax.nn.softmax(scores, axis=-1)

  def __call__(self, x, ids=None, mask=None):
    """x [B, N, D]; ids: int [B, N] grid index of each token, for rotary positions (default: 0..N-1);
    mask: bool broadcastable to [B, heads, N queries, N keys], True where a query may attend to a key."""
    q, k, v = self._qkv(x, ids)
    q, k, v = (sharding.constrain(t, ("batch", "act_seq", "act_heads", None)) for t in (q, k, v))
    out = dot_product_attention(q, k, v, mask=mask, implementation=self.attention_impl)
    y = jnp.einsum("bnhk,hkd->bnd", out, self.proj[...].astype(self.dtype))
    return y + self.proj_bias[...].astype(self.dtype)


ACTIVATIONS = {
  "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # Exact GELU, as torch.nn.GELU.
  "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # OpenAI CLIP's approximation, kept by its checkpoints.
}


class Mlp(nnx.Module):
  def __init__(self, dim, hidden, *, activation="gelu", dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if activation not in ACTIVATIONS:
      raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = Dense(dim, hidden, axes=("embed", "mlp"), **kw)
    self.fc2 = Dense(hidden, dim, axes=("mlp", "embed"), **kw)
    self.activation = activation

  def __call__(self, x):
    h = ACTIVATIONS[self.activation](self.fc1(x))
    return self.fc2(sharding.constrain(h, ("batch", "act_seq", "act_mlp")))


def drop_path(x, rate: float, rng):
  """Stochastic depth: drops the residual branch per example with probability `rate`."""
  if rate == 0.0 or rng is None:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


@jax.custom_vjp
def _cotangent_once(x):
  return x


def _cotangent_once_fwd(x):
  return x, x


def _cotangent_once_bwd(x, g):
  # g / 1 is g exactly (for finite activations); XLA counts a division as expensive and never
  # duplicates it into several consumers, so g is computed once here.
  return (g / (x * 0 + 1),)


_cotangent_once.defvjp(_cotangent_once_fwd, _cotangent_once_bwd)


def residual_stream(x):
  """Identity on the residual stream x entering a block; on CPU it makes the backward pass compute
  the stream's gradient once per block.

  XLA:CPU otherwise fuses the gradient of every later block's residual branch into each consumer
  (the weight-gradient transposes, the LayerNorm backward reductions) and so recomputes it there:
  quadratic in depth, 15-30% of a ViT backward pass. Other backends fuse this well by themselves.
  """
  return _cotangent_once(x) if jax.default_backend() == "cpu" else x


class Block(nnx.Module):
  """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(
    self,
    dim,
    num_heads,
    mlp_dim,
    *,
    qkv_bias="all",
    norm_eps=1e-6,
    drop_path_rate=0.0,
    attention_impl="auto",
    rope_grid=None,
    activation="gelu",
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = LayerNorm(dim, eps=norm_eps, **kw)
    self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attention_impl=attention_impl, rope_grid=rope_grid, **kw)
    self.norm2 = LayerNorm(dim, eps=norm_eps, **kw)
    self.mlp = Mlp(dim, mlp_dim, activation=activation, **kw)
    self.drop_path_rate = drop_path_rate

  def __call__(self, x, rng=None, ids=None, mask=None):
    """x [B, N, D]; mask: the attention mask of `Attention` (None: every token sees every token)."""
    rngs = (None, None) if rng is None else tuple(jax.random.split(rng))
    x = residual_stream(x)
    x = x + drop_path(self.attn(self.norm1(x), ids, mask), self.drop_path_rate, rngs[0])
    x = x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, rngs[1])
    return sharding.constrain(x, ("batch", "act_seq", "act_embed"))


class FactorisedBlock(nnx.Module):
  """ViViT model 3 ("factorised self-attention"): spatial attention among the tokens of one
  frame, then temporal attention among the tokens of one position, then the MLP.

  Tokens [B, N, D] must be whole frames in (t, s) order, N = num_frames * S (the full grid, or
  VideoMAE's tube masking, which keeps the same positions in every frame).
  """

  def __init__(
    self,
    dim,
    num_heads,
    mlp_dim,
    *,
    num_frames: int,
    qkv_bias="all",
    norm_eps=1e-6,
    drop_path_rate=0.0,
    attention_impl="auto",
    activation="gelu",
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    attn_kw = dict(qkv_bias=qkv_bias, attention_impl=attention_impl, **kw)
    self.norm1 = LayerNorm(dim, eps=norm_eps, **kw)
    self.attn = Attention(dim, num_heads, **attn_kw)
    self.norm_t = LayerNorm(dim, eps=norm_eps, **kw)
    self.attn_t = Attention(dim, num_heads, **attn_kw)
    self.norm2 = LayerNorm(dim, eps=norm_eps, **kw)
    self.mlp = Mlp(dim, mlp_dim, activation=activation, **kw)
    self.num_frames = num_frames
    self.drop_path_rate = drop_path_rate

  def __call__(self, x, rng=None):
    b, n, d = x.shape
    t = self.num_frames
    if n % t:
      raise ValueError(f"factorised attention needs whole frames: {n} tokens are not {t} frames")
    rngs = (None,) * 3 if rng is None else tuple(jax.random.split(rng, 3))
    x = residual_stream(x)
    # Stochastic depth drops a branch for a whole clip, so it is applied in [B, N, D].
    spatial = self.attn(self.norm1(x).reshape(b * t, n // t, d)).reshape(b, n, d)
    x = x + drop_path(spatial, self.drop_path_rate, rngs[0])
    tubes = einops.rearrange(self.norm_t(x), "b (t s) d -> (b s) t d", t=t)
    temporal = einops.rearrange(self.attn_t(tubes), "(b s) t d -> b (t s) d", b=b)
    x = x + drop_path(temporal, self.drop_path_rate, rngs[1])
    x = x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, rngs[2])
    return sharding.constrain(x, ("batch", "act_seq", "act_embed"))


def _rotate(x, positions):
  """V-JEPA 2's rotate_queries_or_keys: x [B, N, H, d] turned by positions [B, N] at d/2 frequencies.

  As in facebookresearch/vjepa2 (and transformers' VJEPA2), channels are paired (2i, 2i+1) but the
  sin/cos tables are tiled, not interleaved: channel j uses frequency j mod d/2. Checkpoints were
  trained with exactly this, so it is kept.
  """
  d = x.shape[-1]
  omega = 1.0 / 10000 ** (jnp.arange(d // 2, dtype=jnp.float32) / (d / 2))
  freq = positions.astype(jnp.float32)[..., None, None] * omega  # [B, N, 1, d/2]
  sin, cos = (jnp.tile(f(freq), 2).astype(x.dtype) for f in (jnp.sin, jnp.cos))
  pairs = x.reshape(*x.shape[:-1], d // 2, 2)
  turned = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
  return x * cos + turned * sin


def rope_3d(x, ids, grid: tuple[int, int, int]):
  """3-D rotary position embedding (V-JEPA 2's RoPEAttention) of queries or keys x [B, N, H, Dh].

  ids [B, N] (or [1, N]) are the tokens' indices in the flattened (t, h, w) grid. Three equal even
  slices of each head, 2 * (Dh // 3 // 2) channels each, turn by the frame, row and column; channels
  left over stay as they are.
  """
  _, rows, cols = grid
  axes = (ids // (rows * cols), ids % (rows * cols) // cols, ids % cols)
  d = 2 * (x.shape[-1] // 3 // 2)
  parts = [_rotate(x[..., i * d : (i + 1) * d], axis) for i, axis in enumerate(axes)]
  return jnp.concatenate(parts + [x[..., 3 * d :]], axis=-1)


def sincos_table(num_positions: int, dim: int) -> np.ndarray:
  """VideoMAE's fixed 1-D sinusoid table over the flattened token index: [N, D].

  Even channels hold sin, odd channels cos, of pos / 10000^(2*(i//2)/D); the
  official checkpoints were trained with exactly this table.
  """
  pos = np.arange(num_positions, dtype=np.float64)[:, None]
  i = np.arange(dim)[None, :]
  angle = pos / np.power(10000.0, 2 * (i // 2) / dim)
  table = np.where(i % 2 == 0, np.sin(angle), np.cos(angle))
  return table.astype(np.float32)


def image_hw(image_size) -> tuple[int, int]:
  """data.image_size as (height, width): an int is a square."""
  if isinstance(image_size, int):
    return image_size, image_size
  height, width = image_size
  return int(height), int(width)


def is_sincos_table(table: np.ndarray) -> bool:
  """Whether `table` [N, D] is `sincos_table(N, D)` (a fixed table, recomputed for other token counts)."""
  return table.ndim == 2 and np.allclose(table, sincos_table(*table.shape), atol=1e-5)


def resize_matrix(n_in: int, n_out: int, kind: str) -> np.ndarray:
  """[n_out, n_in] float64 weights that resample n_in samples to n_out as torch.nn.functional.interpolate does
  (align_corners=False, no antialiasing).

  kind: "linear", or "cubic" (torch's bicubic: Keys' kernel with a = -0.75, border samples repeated).
  """
  if kind not in ("linear", "cubic"):
    raise ValueError(f"kind must be 'linear' or 'cubic', not {kind!r}")
  m = np.zeros((n_out, n_in))
  # Source positions in float32 arithmetic, as torch computes them for float32 tensors.
  scale = np.float32(n_in) / np.float32(n_out)
  for i in range(n_out):
    src = float(scale * np.float32(i + 0.5) - np.float32(0.5))
    if kind == "linear":
      src = max(src, 0.0)
      i0 = int(np.floor(src))
      frac = src - i0
      m[i, i0] += 1.0 - frac
      m[i, min(i0 + 1, n_in - 1)] += frac
    else:
      i0 = int(np.floor(src))
      for k, weight in zip(range(i0 - 1, i0 + 3), _cubic_weights(src - i0)):
        m[i, min(max(k, 0), n_in - 1)] += weight
  return m


def _cubic_weights(t: float, a: float = -0.75) -> tuple[float, ...]:
  """Keys' cubic kernel at the four samples around a point t in [0, 1) past the second one."""
  near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1.
  far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2.
  return far(t + 1), near(t), near(1 - t), far(2 - t)


def resize_axis(x, axis: int, size: int, kind: str):
  """x (numpy or jax array) resampled to `size` entries along `axis` (see `resize_matrix`); x itself if it fits."""
  if x.shape[axis] == size:
    return x
  if isinstance(x, np.ndarray):
    out = np.tensordot(resize_matrix(x.shape[axis], size, kind), x.astype(np.float64), axes=(1, axis))
    return np.moveaxis(out, 0, axis).astype(x.dtype)
  weights = jnp.asarray(resize_matrix(x.shape[axis], size, kind), jnp.float32)
  out = jnp.tensordot(weights, x.astype(jnp.float32), axes=(1, axis))
  return jnp.moveaxis(out, 0, axis).astype(x.dtype)


def resize_pos_table(table, from_grid: tuple[int, int, int], to_grid: tuple[int, int, int]):
  """A learned position table [T*H*W, D] on token grid from_grid (t, h, w order) resampled to to_grid.

  Space is resampled bicubically, as VideoMAE, MAE and timm do when fine-tuning at another
  resolution; time linearly.
  """
  x = table.reshape(*from_grid, table.shape[-1])
  for axis, (size, kind) in enumerate(zip(to_grid, ("linear", "cubic", "cubic"))):
    x = resize_axis(x, axis, size, kind)
  return x.reshape(-1, table.shape[-1])
