"""MViTv2: torchvision's parameter count and outputs, on imported random weights.

Tolerance as the other parity tests: max abs difference <= 1e-4 in float32 on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib, registry
from jvssl.methods.base import RunLength
from jvssl.models import mvit

from test_parity import TOL, _build, _max_diff
from torch_refs import import_torch, randomize, state_dict, torchvision_video


def _config(frames, size, num_classes=400, variant="S"):
  c = config_lib.base_config(model="mvit", method="classify")
  c.model.variant = variant
  c.method.num_classes = num_classes
  c.data.num_frames, c.data.image_size = frames, size
  return c


def _count(config) -> int:
  method = registry.METHODS.get("classify")(config, RunLength(1, 1.0))
  model = nnx.eval_shape(lambda: method.build(nnx.Rngs(0)))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_block_settings_are_torchvision_mvit_v2_s():
  settings = mvit.block_settings(_config(16, 224).model)
  import_torch()
  torchvision_video()
  from torchvision.models.video import mvit as tv_mvit

  theirs = [
    (b.input_channels, b.output_channels, b.num_heads, tuple(b.stride_q), tuple(b.stride_kv))
    for b in _torchvision_setting(tv_mvit)
  ]
  assert theirs == [(s["in"], s["out"], s["heads"], s["q_stride"], s["kv_stride"]) for s in settings]
  assert [s["out"] for s in settings] == [96, 192, 192] + [384] * 11 + [768, 768]
  assert [s["heads"] for s in settings] == [1, 2, 2] + [4] * 11 + [8, 8]
  assert [s["kv_stride"][1] for s in settings] == [8, 4, 4] + [2] * 11 + [1, 1]
  assert [i for i, s in enumerate(settings) if s["q_stride"] != (1, 1, 1)] == [1, 3, 14]
  assert len(mvit.block_settings(_config(16, 224, variant="B").model)) == 24


def test_parameter_count_matches_torchvision_and_the_paper():
  count = _count(_config(16, 224))
  assert count == 34_537_744  # MViTv2-S 16x4: "34.5M" in the paper.
  video = torchvision_video()
  assert count == sum(p.numel() for p in video.mvit_v2_s().parameters())


def test_mvit_v2_b_has_the_papers_parameter_count():
  assert _count(_config(16, 224, variant="B")) == 51_193_264  # "51.2M" in the MViTv2 paper (K400).


def test_torchvision_mvit_v2_s_parity():
  """mvit_v2_s's blocks on a small clip (8x64x64: grids 4x16x16 down to 4x2x2), so it runs in seconds."""
  torch = import_torch()
  torchvision_video()  # Skips the test when torchvision's video models are missing.
  from torchvision.models.video import mvit as tv_mvit

  ref = tv_mvit._mvit(
    block_setting=_torchvision_setting(tv_mvit),
    stochastic_depth_prob=0.0,
    weights=None,
    progress=False,
    spatial_size=(64, 64),
    temporal_size=8,
    num_classes=7,
    residual_pool=True,
    residual_with_cls_embed=False,
    rel_pos_embed=True,
    proj_after_attn=True,
  )
  ref = randomize(torch, ref)
  x = torch.randn(2, 3, 8, 64, 64)
  with torch.no_grad():
    expected = ref(x).numpy()
  model, report = _build(_config(8, 64, num_classes=7), state_dict(ref), "torchvision", abstract=True)
  assert report.unused == [] and report.kept == []
  assert np.abs(expected).mean() > 0.1
  video_in = jnp.asarray(x.permute(0, 2, 3, 4, 1).numpy())
  assert model.encoder.grid == (4, 2, 2)
  assert _max_diff(model(video_in), expected) <= TOL  # Measured: 1.9e-6.


def _torchvision_setting(tv_mvit):
  """mvit_v2_s's own block list (torchvision builds it inside mvit_v2_s and hands it to _mvit)."""
  captured = []
  original = tv_mvit._mvit
  tv_mvit._mvit = lambda block_setting, **kwargs: captured.append(block_setting)
  try:
    tv_mvit.mvit_v2_s()
  finally:
    tv_mvit._mvit = original
  return captured[0]


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="unknown MViTv2 variant"):
    _count(_config(16, 224, variant="XL"))
