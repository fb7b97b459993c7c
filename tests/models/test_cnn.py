import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib, models
from jvssl.methods.classify import Classifier
from jvssl.models import conv


def _config(name, frames=16, size=224, num_classes=400, **model):
  c = config_lib.base_config(model=name, method="classify")
  c.method.num_classes = num_classes
  c.data.num_frames, c.data.image_size = frames, size
  for k, v in model.items():
    c.model[k] = v
  return c


def _count(module) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


# Published sizes with a 400-class head (torchvision's model docs; Hara et al. for 3D ResNet-50).
@pytest.mark.parametrize(
  "name,model,count,published",
  [
    ("r3d", {"depth": 18}, 33_371_472, 33.4),
    ("r2plus1d", {"depth": 18}, 31_505_325, 31.5),
    ("s3d", {}, 8_320_048, 8.3),
    ("r3d", {"depth": 50}, 46_980_944, 47.0),
  ],
)
def test_parameter_counts_match_published(name, model, count, published):
  abstract = nnx.eval_shape(lambda: Classifier(_config(name, **model), rngs=nnx.Rngs(0)))
  assert _count(abstract) == count
  assert round(count / 1e6, 1) == published


def test_parameter_counts_match_torchvision():
  pytest.importorskip("torch")
  if importlib.util.find_spec("torchvision") is None:
    pytest.skip("torchvision is not installed")
  from torch_refs import torchvision_video

  video = torchvision_video()
  from torchvision.models.video.resnet import BasicStem, Bottleneck, Conv3DSimple, VideoResNet

  refs = {
    "r3d": video.r3d_18(),
    "r2plus1d": video.r2plus1d_18(),
    "s3d": video.s3d(),
    "r3d50": VideoResNet(Bottleneck, [Conv3DSimple] * 4, [3, 4, 6, 3], BasicStem),
  }
  for key, ref in refs.items():
    name, model = ("r3d", {"depth": 50}) if key == "r3d50" else (key, {})
    abstract = nnx.eval_shape(lambda: Classifier(_config(name, **model), rngs=nnx.Rngs(0)))
    assert _count(abstract) == sum(p.numel() for p in ref.parameters()), key


@pytest.mark.parametrize(
  "name,grid,width", [("r3d", (2, 4, 4), 512), ("r2plus1d", (2, 4, 4), 512), ("s3d", (2, 2, 2), 1024)]
)
def test_outputs_and_grid(name, grid, width):
  c = _config(name, frames=16, size=64)
  abstract = nnx.eval_shape(lambda: models.build(c, rngs=nnx.Rngs(0)))
  out = jax.eval_shape(lambda m: m(jnp.zeros((2, 16, 64, 64, 3))), abstract)
  assert abstract.grid == grid and abstract.width == width
  assert out["tokens"].shape == (2, int(np.prod(grid)), width) and out["pooled"].shape == (2, width)


# The train step carrying BatchNorm statistics in `rest` (global-batch mean over devices) is tested in
# test_sharding_equivalence.py.
def test_eval_mode_uses_running_statistics():
  bn = conv.BatchNorm(3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 2, 4, 4, 3)) * 3 + 5
  y = bn(x, train=True)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2, 3)), 0, atol=1e-5)
  np.testing.assert_allclose(bn.mean[...], 0.1 * x.mean(axis=(0, 1, 2, 3)), rtol=1e-5)
  np.testing.assert_allclose(bn(x, train=False), (x - bn.mean[...]) / jnp.sqrt(bn.var[...] + 1e-5), rtol=1e-4)
  assert conv.is_training(None, None) is False and conv.is_training(jax.random.key(0), None) is True
