"""Parts shared by the 3D CNNs: Conv3d, BatchNorm with batch statistics as state, pooling.

Tensors are channels-last, [B, T, H, W, C]. Conv kernels are [kt, kh, kw, in, out]
(PyTorch's [out, in, kt, kh, kw] transposed), so import is a transpose.
Channel axes are annotated "conv_in"/"conv_out": no built-in rule set shards
them (CNN widths such as 3, 45 or 230 rarely divide a mesh axis); add a rule in
`sharding.rules` to shard them.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jvssl import sharding
from jvssl.models import layers


def triple(x) -> tuple[int, int, int]:
  return tuple(x) if isinstance(x, (tuple, list)) else (x, x, x)


def out_size(size: int, kernel: int, stride: int, pad: int) -> int:
  """Length of a conv/pool output along one axis (floor mode, as PyTorch)."""
  return (size + 2 * pad - kernel) // stride + 1


class Conv3d(nnx.Module):
  """3D convolution with explicit symmetric padding (PyTorch semantics): x [B, T, H, W, Cin]."""

  def __init__(
    self,
    in_ch,
    out_ch,
    kernel,
    *,
    stride=1,
    padding=0,
    use_bias=False,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.kernel_size, self.stride, self.padding = triple(kernel), triple(stride), triple(padding)
    # He init (fan_out), as torchvision's video models.
    init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal", in_axis=-2, out_axis=-1)
    self.kernel = layers.param(
      rngs, init, (*self.kernel_size, in_ch, out_ch), (None, None, None, "conv_in", "conv_out"), param_dtype
    )
    self.bias = layers.param(rngs, nnx.initializers.zeros, (out_ch,), ("conv_out",), param_dtype) if use_bias else None
    self.dtype = dtype

  def out_shape(self, t: int, h: int, w: int) -> tuple[int, int, int]:
    return tuple(out_size(n, k, s, p) for n, k, s, p in zip((t, h, w), self.kernel_size, self.stride, self.padding))

  def __call__(self, x):
    y = jax.lax.conv_general_dilated(
      x.astype(self.dtype),
      self.kernel[...].astype(self.dtype),
      self.stride,
      [(p, p) for p in self.padding],
      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
    )
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class BatchNorm(nnx.Module):
  """BatchNorm over [B, T, H, W, C] with PyTorch's semantics and defaults.

  Training (`train=True`) normalises by the statistics of the batch (biased
  variance) and moves the running averages (unbiased variance) by `momentum`;
  under jit with a batch sharded over devices the mean is over the global batch,
  i.e. cross-replica. Evaluation uses the running averages. The running
  averages are nnx.BatchStat, so they live in the train state's `rest`.
  """

  def __init__(self, ch, *, eps=1e-5, momentum=0.1, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.scale = layers.param(rngs, nnx.initializers.ones, (ch,), ("conv_out",), param_dtype)
    self.bias = layers.param(rngs, nnx.initializers.zeros, (ch,), ("conv_out",), param_dtype)
    self.mean = nnx.BatchStat(jnp.zeros((ch,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((ch,), jnp.float32))
    self.eps, self.momentum, self.dtype = eps, momentum, dtype

  def __call__(self, x, train: bool):
    x32 = x.astype(jnp.float32)  # bf16 statistics drift.
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = x32.mean(axes)
      var = jnp.square(x32 - mean).mean(axes)
      n = x.size // x.shape[-1]
      m = self.momentum
      self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
      self.var[...] = (1 - m) * self.var[...] + m * jax.lax.stop_gradient(var) * n / max(n - 1, 1)
    else:
      mean, var = self.mean[...], self.var[...]
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
    return y.astype(self.dtype)


class ConvBN(nnx.Module):
  """Conv3d (no bias) -> BatchNorm -> optional ReLU: the unit every 3D CNN here is made of."""

  def __init__(
    self,
    in_ch,
    out_ch,
    kernel,
    *,
    stride=1,
    padding=0,
    relu=True,
    bn_eps=1e-5,
    bn_momentum=0.1,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv = Conv3d(in_ch, out_ch, kernel, stride=stride, padding=padding, **kw)
    self.norm = BatchNorm(out_ch, eps=bn_eps, momentum=bn_momentum, **kw)
    self.relu = relu

  def out_shape(self, t, h, w):
    return self.conv.out_shape(t, h, w)

  def __call__(self, x, train: bool):
    y = self.norm(self.conv(x), train)
    y = jax.nn.relu(y) if self.relu else y
    return sharding.constrain(y, ("batch", None, None, None, None))


def max_pool(x, kernel, stride, padding):
  """PyTorch MaxPool3d (padding counts as -inf) on [B, T, H, W, C]."""
  kernel, stride, padding = triple(kernel), triple(stride), triple(padding)
  return jax.lax.reduce_window(
    x, -jnp.inf, jax.lax.max, (1, *kernel, 1), (1, *stride, 1), ((0, 0), *((p, p) for p in padding), (0, 0))
  )


class MaxPool(nnx.Module):
  """Parameter-free MaxPool3d as a module, so it can sit in a layer list like PyTorch's nn.Sequential."""

  def __init__(self, kernel, stride, padding=0):
    self.kernel_size, self.stride, self.padding = triple(kernel), triple(stride), triple(padding)

  def out_shape(self, t, h, w):
    return tuple(out_size(n, k, s, p) for n, k, s, p in zip((t, h, w), self.kernel_size, self.stride, self.padding))

  def __call__(self, x, train: bool):
    del train
    return max_pool(x, self.kernel_size, self.stride, self.padding)


def is_training(rng, train: bool | None) -> bool:
  """Batch statistics are used when asked, or by default whenever a training key is given.

  Encoders share `__call__(video, rng=None, train=None)`: the train step passes a
  key, evaluation passes none, so existing callers get the right mode.
  """
  return rng is not None if train is None else train


def outputs(x) -> dict:
  """Feature map [B, T', H', W', C] -> {"tokens": [B, T'H'W', C], "pooled": [B, C] (global mean)}."""
  b, c = x.shape[0], x.shape[-1]
  tokens = x.reshape(b, -1, c)
  return {"tokens": tokens, "pooled": tokens.astype(jnp.float32).mean(axis=1).astype(x.dtype)}
