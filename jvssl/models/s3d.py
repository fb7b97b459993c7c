"""S3D (Xie et al. 2018): separable 3D Inception, as torchvision's `s3d` (8.3M parameters
with a 400-class head). Channels-last: video [B, T, H, W, 3] -> 1024-channel features.

`features` mirrors torchvision's `features` Sequential index for index (pools included),
so checkpoint import is a rename and a transpose.
"""

import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.models import conv


class SepConv(nnx.Module):
  """torchvision's TemporalSeparableConv: 1xkxk spatial then kx1x1 temporal ConvBN-ReLU."""

  def __init__(self, in_ch, out_ch, kernel, stride, padding, *, kw):
    self.spatial = conv.ConvBN(
      in_ch, out_ch, (1, kernel, kernel), stride=(1, stride, stride), padding=(0, padding, padding), **kw
    )
    self.temporal = conv.ConvBN(out_ch, out_ch, (kernel, 1, 1), stride=(stride, 1, 1), padding=(padding, 0, 0), **kw)

  def out_shape(self, t, h, w):
    return self.temporal.out_shape(*self.spatial.out_shape(t, h, w))

  def __call__(self, x, train: bool):
    return self.temporal(self.spatial(x, train), train)


class Inception(nnx.Module):
  """torchvision's SepInceptionBlock3D: four branches concatenated on channels."""

  def __init__(self, in_ch, b0, b1_mid, b1, b2_mid, b2, b3, *, kw):
    self.branch0 = conv.ConvBN(in_ch, b0, 1, **kw)
    self.branch1 = nnx.List([conv.ConvBN(in_ch, b1_mid, 1, **kw), SepConv(b1_mid, b1, 3, 1, 1, kw=kw)])
    self.branch2 = nnx.List([conv.ConvBN(in_ch, b2_mid, 1, **kw), SepConv(b2_mid, b2, 3, 1, 1, kw=kw)])
    self.branch3 = nnx.List([conv.MaxPool(3, 1, 1), conv.ConvBN(in_ch, b3, 1, **kw)])
    self.out_ch = b0 + b1 + b2 + b3

  def out_shape(self, t, h, w):
    return t, h, w

  def __call__(self, x, train: bool):
    outs = [self.branch0(x, train)]
    for branch in (self.branch1, self.branch2, self.branch3):
      y = x
      for layer in branch:
        y = layer(y, train)
      outs.append(y)
    return jnp.concatenate(outs, axis=-1)


# torchvision's S3D feature layers: ("sep", in, out, kernel, stride, pad), ("pool", kernel, stride, pad),
# ("conv", in, out), ("inc", in, b0, b1_mid, b1, b2_mid, b2, b3).
LAYOUT = (
  ("sep", 3, 64, 7, 2, 3),
  ("pool", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
  ("conv", 64, 64),
  ("sep", 64, 192, 3, 1, 1),
  ("pool", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
  ("inc", 192, 64, 96, 128, 16, 32, 32),
  ("inc", 256, 128, 128, 192, 32, 96, 64),
  ("pool", 3, 2, 1),
  ("inc", 480, 192, 96, 208, 16, 48, 64),
  ("inc", 512, 160, 112, 224, 24, 64, 64),
  ("inc", 512, 128, 128, 256, 24, 64, 64),
  ("inc", 512, 112, 144, 288, 32, 64, 64),
  ("inc", 528, 256, 160, 320, 32, 128, 128),
  ("pool", 2, 2, 0),
  ("inc", 832, 256, 160, 320, 32, 128, 128),
  ("inc", 832, 384, 192, 384, 48, 128, 128),
)


@registry.MODELS.register("s3d")
class S3D(nnx.Module):
  """video [B, T, H, W, 3] -> {"tokens": [B, T/8 * H/32 * W/32, 1024], "pooled": [B, 1024]}."""

  @staticmethod
  def default_config() -> ConfigDict:
    # torchvision's (and the TF original's) BatchNorm settings for S3D.
    return ConfigDict({"bn_momentum": 0.001, "bn_eps": 1e-3})

  def __init__(
    self, config, *, num_frames: int, image_size: int, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32
  ):
    kw = dict(bn_eps=config.bn_eps, bn_momentum=config.bn_momentum, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    features = []
    for kind, *args in LAYOUT:
      if kind == "sep":
        features.append(SepConv(*args, kw=kw))
      elif kind == "pool":
        features.append(conv.MaxPool(*args))
      elif kind == "conv":
        features.append(conv.ConvBN(*args, 1, **kw))
      else:
        features.append(Inception(*args, kw=kw))
    self.features = nnx.List(features)
    self.width = 1024
    shape = (num_frames, image_size, image_size)
    for layer in self.features:
      shape = layer.out_shape(*shape)
    if min(shape) < 1:
      raise ValueError(f"input {num_frames}x{image_size}x{image_size} is too small for S3D")
    self.grid = shape

  def __call__(self, video, *, rng=None, train: bool | None = None):
    train = conv.is_training(rng, train)
    x = video
    for layer in self.features:
      x = layer(x, train)
    return conv.outputs(x)
