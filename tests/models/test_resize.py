"""Position tables at other input sizes: resampled as torch resamples them, and MViTv2 at the sizes
torchvision's mvit_v2_s runs (112, 176 and 240 px, non-square clips), with torchvision's outputs.

Tolerance as the other parity tests: max abs difference <= 1e-4 in float32 on CPU.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib
from jvssl.models import layers, mvit, vit

from test_mvit import _torchvision_setting
from test_parity import TOL, _build, _max_diff
from torch_refs import import_torch, randomize, state_dict, torchvision_video


def _tv_mvit():
  import_torch()
  torchvision_video()  # Skips the test when torchvision's video models are missing.
  from torchvision.models.video import mvit as tv_mvit

  return tv_mvit


@pytest.mark.parametrize("n_in,n_out", [(13, 7), (5, 7), (111, 55), (3, 9)])
def test_rel_pos_interpolation_is_torchvisions(n_in, n_out):
  torch, tv_mvit = import_torch(), _tv_mvit()
  table = np.random.default_rng(0).standard_normal((n_in, 8)).astype(np.float32)
  expected = tv_mvit._interpolate(torch.from_numpy(table), n_out).numpy()
  assert _max_diff(layers.resize_axis(table, 0, n_out, "linear"), expected) <= 1e-6
  assert _max_diff(layers.resize_axis(jnp.asarray(table), 0, n_out, "linear"), expected) <= 1e-6


def test_learned_pos_table_resampling_is_torchs():
  """Space bicubically (torch's bicubic, as VideoMAE's fine-tuning resamples), time linearly."""
  torch = import_torch()
  interpolate = torch.nn.functional.interpolate
  table = np.random.default_rng(0).standard_normal((2 * 4 * 6, 8)).astype(np.float32)
  got = layers.resize_pos_table(table, (2, 4, 6), (3, 7, 5))
  x = torch.from_numpy(table.reshape(2, 4, 6, 8)).permute(0, 3, 1, 2)  # [T, D, H, W]
  x = interpolate(x, size=(7, 5), mode="bicubic", align_corners=False)
  x = interpolate(x.permute(1, 2, 3, 0).reshape(1, 8 * 7 * 5, 2), size=3, mode="linear")  # Time: [1, D*H*W, T].
  expected = x.reshape(8, 7, 5, 3).permute(3, 1, 2, 0).reshape(-1, 8).numpy()
  assert got.shape == (3 * 7 * 5, 8)
  assert _max_diff(got, expected) <= 1e-5


def _tiny_config(frames, image_size):
  c = config_lib.base_config(model="mvit", method="classify")
  c.model.depths = (1, 1, 1, 2)  # mvit_v2_s's blocks 0, 1, 3, 14 and 15.
  c.method.num_classes = 7
  c.data.num_frames = frames
  # Replaced rather than set: the field's type is the default's (int), the models take (H, W) too.
  del c.data.image_size
  c.data.image_size = image_size
  return c


def test_mvit_at_8x112x112_is_torchvisions():
  """torchvision sizes its relative-position tables from floor-divided grids and interpolates them where
  the pooled grids round up (at 112 px the last stage's table of 5 entries serves grids of 4, which need 7);
  jvssl's tables fit the grids, and its import interpolates torchvision's tables as torchvision does at run
  time, so the logits agree."""
  torch, tv_mvit = import_torch(), _tv_mvit()
  frames, size = 8, (112, 112)
  setting = [_torchvision_setting(tv_mvit)[i] for i in (0, 1, 3, 14, 15)]
  config = _tiny_config(frames, size)
  ours = [(s["in"], s["out"], s["heads"], s["q_stride"], s["kv_stride"]) for s in mvit.block_settings(config.model)]
  assert ours == [
    (b.input_channels, b.output_channels, b.num_heads, tuple(b.stride_q), tuple(b.stride_kv)) for b in setting
  ]
  ref = tv_mvit._mvit(
    block_setting=setting,
    stochastic_depth_prob=0.0,
    weights=None,
    progress=False,
    spatial_size=size,
    temporal_size=frames,
    num_classes=7,
    residual_pool=True,
    residual_with_cls_embed=False,
    rel_pos_embed=True,
    proj_after_attn=True,
  )
  ref = randomize(torch, ref)
  x = torch.randn(1, 3, frames, *size)
  with torch.no_grad():
    expected = ref(x).numpy()
  model, report = _build(config, state_dict(ref), "torchvision", abstract=True)
  assert report.unused == [] and report.kept == [] and report.adapted
  assert np.abs(expected).mean() > 0.1
  # Compiled once: eager dispatch compiles each op for its shapes and takes longer.
  got = nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x.permute(0, 2, 3, 4, 1).numpy()))
  assert _max_diff(got, expected) <= TOL


def test_mvit_v2_s_builds_and_traces_at_176x240():
  """Grids that round up in the pooling (44 -> 22 -> 11 -> 6 at 176 px, 60 -> 30 -> 15 -> 8 at 240 px) once
  had tables that did not fit; height and width may differ."""
  frames, size, grid = 16, (176, 240), (8, 6, 8)
  c = _tiny_config(frames, size)
  c.model.depths = ()

  model = nnx.eval_shape(lambda: mvit.MViT(c.model, num_frames=frames, image_size=size, rngs=nnx.Rngs(0)))
  out = nnx.eval_shape(lambda m: m(jnp.zeros((1, frames, *size, 3))), model)
  assert model.grid == grid and out["tokens"].shape == (1, int(np.prod(grid)), 768)


def test_rel_pos_bias_with_tables_that_do_not_fit_is_torchvisions():
  """A model run on clips of another size than it was built for interpolates its tables as torchvision's
  _add_rel_pos does, also for query and key grids of different sizes (non-integer ratios included)."""
  torch, tv_mvit = import_torch(), _tv_mvit()
  s = {"in": 16, "out": 16, "heads": 2, "q_stride": (1, 2, 2), "kv_stride": (1, 4, 4)}
  attn = mvit.MultiscaleAttention(
    s, (2, 8, 8), norm_eps=1e-6, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0)
  )
  rng = np.random.default_rng(0)
  tables = {axis: rng.standard_normal((n, 8)).astype(np.float32) for axis, n in zip("thw", (3, 9, 5))}
  for axis, table in tables.items():
    setattr(attn, f"rel_pos_{axis}", nnx.Param(jnp.asarray(table)))
  q_thw, k_thw = (3, 6, 5), (3, 3, 3)
  q = rng.standard_normal((2, 1 + 90, 2, 8)).astype(np.float32)  # [B, 1 + Nq, heads, head_dim]
  ours = attn.rel_pos_bias(jnp.asarray(q), q_thw, k_thw)
  theirs = tv_mvit._add_rel_pos(
    torch.zeros(2, 2, 1 + 90, 1 + 27),
    torch.from_numpy(q).transpose(1, 2),
    q_thw,
    k_thw,
    *(torch.from_numpy(tables[axis]) for axis in "hwt"),
  )
  assert _max_diff(ours, theirs.numpy()) <= 1e-5


def test_vit_takes_non_square_clips():
  c = config_lib.base_config(model="vit", method="classify").model
  c.width, c.depth, c.num_heads, c.mlp_dim, c.patch_size = 32, 1, 2, 64, (2, 8, 8)
  model = nnx.eval_shape(lambda: vit.ViT(c, num_frames=4, image_size=(32, 48), rngs=nnx.Rngs(0)))
  out = nnx.eval_shape(lambda m: m(jnp.zeros((1, 4, 32, 48, 3))), model)
  assert model.grid == (2, 4, 6) and out["tokens"].shape == (1, 48, 32)
