"""3D ResNets as torchvision builds them: R3D (full 3x3x3 convolutions) and R(2+1)D
(each 3x3x3 factorised into a 1x3x3 spatial and a 3x1x1 temporal convolution, with
the middle width chosen to keep the parameter count of the 3D convolution).

Depth 18 with a 400-class head: R3D-18 33.4M and R(2+1)D-18 31.5M parameters, as
torchvision's r3d_18 / r2plus1d_18. Depth 50 uses bottleneck blocks (46.98M, the
3D ResNet-50 of Hara et al.). Channels-last: video [B, T, H, W, 3].
"""

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.models import conv

# depth: (blocks per stage, bottleneck blocks?)
DEPTHS = {
  10: ((1, 1, 1, 1), False),
  18: ((2, 2, 2, 2), False),
  34: ((3, 4, 6, 3), False),
  50: ((3, 4, 6, 3), True),
  101: ((3, 4, 23, 3), True),
  152: ((3, 8, 36, 3), True),
}
WIDTHS = (64, 128, 256, 512)


def spatiotemporal(in_ch, out_ch, mid_ch, stride, *, kind, relu, kw) -> nnx.List:
  """The 3x3x3 unit: one ConvBN ("3d"), or spatial then temporal ConvBN ("2plus1d").

  As torchvision's Conv3DSimple / Conv2Plus1D followed by their BatchNorm (and ReLU).
  """
  if kind == "3d":
    return nnx.List([conv.ConvBN(in_ch, out_ch, 3, stride=stride, padding=1, relu=relu, **kw)])
  return nnx.List(
    [
      conv.ConvBN(in_ch, mid_ch, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), **kw),
      conv.ConvBN(mid_ch, out_ch, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), relu=relu, **kw),
    ]
  )


class Block(nnx.Module):
  """Residual block: `parts` are torchvision's conv1, conv2(, conv3), each a list of ConvBN."""

  def __init__(self, in_ch, planes, stride, *, bottleneck: bool, kind: str, kw):
    # torchvision's R(2+1)D middle width: the (2+1)D pair has as many weights as one 3x3x3 conv.
    mid = (in_ch * planes * 27) // (in_ch * 9 + 3 * planes)
    if bottleneck:
      out_ch = 4 * planes
      parts = [
        nnx.List([conv.ConvBN(in_ch, planes, 1, **kw)]),
        spatiotemporal(planes, planes, mid, stride, kind=kind, relu=True, kw=kw),
        nnx.List([conv.ConvBN(planes, out_ch, 1, relu=False, **kw)]),
      ]
    else:
      out_ch = planes
      parts = [
        spatiotemporal(in_ch, planes, mid, stride, kind=kind, relu=True, kw=kw),
        spatiotemporal(planes, planes, mid, 1, kind=kind, relu=False, kw=kw),
      ]
    self.parts = nnx.List(parts)
    self.downsample = (
      conv.ConvBN(in_ch, out_ch, 1, stride=stride, relu=False, **kw) if stride != 1 or in_ch != out_ch else None
    )
    self.out_ch = out_ch

  def units(self):
    return [unit for part in self.parts for unit in part]

  def out_shape(self, t, h, w):
    for unit in self.units():
      t, h, w = unit.out_shape(t, h, w)
    return t, h, w

  def __call__(self, x, train: bool):
    y = x
    for unit in self.units():
      y = unit(y, train)
    shortcut = x if self.downsample is None else self.downsample(x, train)
    return jax.nn.relu(y + shortcut)


class VideoResNet(nnx.Module):
  """video [B, T, H, W, 3] -> {"tokens": [B, T'H'W', C], "pooled": [B, C]}; C = 512 (4 * 512 with bottlenecks)."""

  KIND = "3d"

  @classmethod
  def default_config(cls) -> ConfigDict:
    return ConfigDict({"depth": 18, "bn_momentum": 0.1, "bn_eps": 1e-5})

  def __init__(
    self, config, *, num_frames: int, image_size: int, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32
  ):
    if config.depth not in DEPTHS:
      raise ValueError(f"unknown ResNet depth {config.depth}; known: {', '.join(map(str, DEPTHS))}")
    blocks, bottleneck = DEPTHS[config.depth]
    kw = dict(bn_eps=config.bn_eps, bn_momentum=config.bn_momentum, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if self.KIND == "3d":
      stem = [conv.ConvBN(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), **kw)]
    else:
      stem = [
        conv.ConvBN(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), **kw),
        conv.ConvBN(45, 64, (3, 1, 1), padding=(1, 0, 0), **kw),
      ]
    self.stem = nnx.List(stem)
    layers, in_ch = [], 64
    for i, (num, planes) in enumerate(zip(blocks, WIDTHS)):
      stage = []
      for j in range(num):
        stride = 2 if i > 0 and j == 0 else 1
        stage.append(Block(in_ch, planes, stride, bottleneck=bottleneck, kind=self.KIND, kw=kw))
        in_ch = stage[-1].out_ch
      layers.append(nnx.List(stage))
    self.layers = nnx.List(layers)
    self.width = in_ch
    shape = (num_frames, image_size, image_size)
    for module in [*self.stem, *(b for stage in self.layers for b in stage)]:
      shape = module.out_shape(*shape)
    if min(shape) < 1:
      raise ValueError(f"input {num_frames}x{image_size}x{image_size} is too small for this ResNet")
    self.grid = shape

  def __call__(self, video, *, rng=None, train: bool | None = None):
    train = conv.is_training(rng, train)
    x = video
    for unit in self.stem:
      x = unit(x, train)
    for stage in self.layers:
      for block in stage:
        x = block(x, train)
    return conv.outputs(x)


@registry.MODELS.register("r3d")
class R3D(VideoResNet):
  KIND = "3d"


@registry.MODELS.register("r2plus1d")
class R2Plus1D(VideoResNet):
  KIND = "2plus1d"
