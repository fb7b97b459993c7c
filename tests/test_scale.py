"""Sharding modes, batch checks, gradient accumulation and FLOP counting."""

import numpy as np
import pytest

from conftest import run_python


def _classify_config(**train):
  """A tiny supervised ViT: deterministic given the batch (no masking, no dropout), for exact comparisons."""
  from jvssl import config as config_lib

  c = config_lib.base_config(model="vit", method="classify")
  c.data.num_frames, c.data.frame_stride, c.data.image_size, c.data.batch_size = 4, 1, 32, 8
  c.data.synthetic.num_classes, c.data.synthetic.num_train = 8, 64
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 1, 2, 64
  c.model.patch_size, c.model.final_norm = (2, 8, 8), "pooled"
  c.method.num_classes = 8
  c.train.num_steps = 2
  for key, value in train.items():
    c.train[key] = value
  return c


def _one_step(config):
  import jax

  from jvssl import sharding, trainer as trainer_lib

  trainer = trainer_lib.Trainer(config, sharding.make_mesh(config.mesh), 2, 8.0)
  rng = np.random.default_rng(0)
  batch = {
    "video": rng.integers(0, 256, (8, 4, 32, 32, 3), dtype=np.uint8),
    "label": rng.integers(0, 8, (8,), dtype=np.int32),
  }
  state, metrics = trainer.step(trainer.init(0), jax.device_put(batch))
  return jax.tree.map(np.asarray, state.params), {k: float(v) for k, v in metrics.items()}, trainer


def test_grad_accumulation_equals_big_batch():
  big, big_metrics, _ = _one_step(_classify_config())
  acc, acc_metrics, _ = _one_step(_classify_config(grad_accum_steps=4))
  np.testing.assert_allclose(acc_metrics["loss"], big_metrics["loss"], rtol=1e-5)
  np.testing.assert_allclose(acc_metrics["grad_norm"], big_metrics["grad_norm"], rtol=1e-4)
  import jax

  for a, b in zip(jax.tree.leaves(acc), jax.tree.leaves(big)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_grad_accumulation_must_divide_batch():
  from jvssl.errors import ConfigError

  with pytest.raises(ConfigError, match="not divisible by train.grad_accum_steps 3"):
    _one_step(_classify_config(grad_accum_steps=3))


@pytest.mark.parametrize("decoder_mask_ratio", [0.0, 0.5])  # VideoMAE, and V2's dual masking.
def test_step_flops_match_the_analytic_count(decoder_mask_ratio):
  """XLA's count of the compiled VideoMAE step agrees with the matmul count of jvssl.flops (ViT-S geometry)."""
  import jax

  from jvssl import config as config_lib, flops, sharding, trainer as trainer_lib

  c = config_lib.load(
    "configs/videomae_k400.py:vit_s",
    ["data.batch_size=2", "data.source=synthetic", "train.num_steps=2", "train.compute_dtype=float32"]
    + [f"method.decoder_mask_ratio={decoder_mask_ratio}"],
  )
  c.model.depth, c.method.decoder_depth = 2, 1  # Compile time; the count scales per block.
  trainer = trainer_lib.Trainer(c, sharding.make_mesh(c.mesh), 2, 1.0)
  state = trainer.abstract_state()
  batch = {"video": jax.ShapeDtypeStruct((2, 16, 224, 224, 3), np.uint8), "label": jax.ShapeDtypeStruct((2,), np.int32)}
  trainer.compile(state, batch)
  analytic = flops.videomae_step_flops(c)
  # XLA also counts elementwise work (softmax, GELU, LayerNorm, AdamW), a few per cent at this size.
  assert 1.0 <= trainer.step_flops / analytic < 1.15, (trainer.step_flops, analytic)


def test_peaks_and_mfu():
  from jvssl import flops

  assert flops.peak_tflops("TPU v5 lite") == 197.0
  assert flops.peak_tflops("TPU v5p") == 459.0
  assert flops.peak_tflops("TPU v6 lite") == 918.0
  assert flops.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
  assert flops.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
  assert flops.peak_tflops("cpu") is None
  assert flops.peak_tflops("cpu", configured=2.0) == 2.0
  assert flops.mfu(1e12, 0.5, 4.0) == pytest.approx(0.5)


def test_fsdp_shards_params_and_optimizer_state_on_8_devices():
  run_python(
    """
import jax, numpy as np, pytest
from jvssl import config as config_lib, sharding, trainer as trainer_lib
from jvssl.errors import ConfigError
c = config_lib.load("configs/videomae_synthetic.py:runlocal",
                    ["sharding.mode=fsdp", "mesh.data=2", "mesh.fsdp=4", "data.batch_size=8"])
mesh = sharding.make_mesh(c.mesh)
trainer = trainer_lib.Trainer(c, mesh, 4, 8.0)
state = trainer.init(0)
qkv = state.params["encoder"]["blocks"][0]["attn"]["qkv"]  # [embed, 3, heads, kv]
fsdp_spec = lambda x: tuple(x.sharding.spec) == ("fsdp", None, None, None)
assert fsdp_spec(qkv), qkv.sharding.spec
assert qkv.addressable_shards[0].data.shape == (qkv.shape[0] // 4,) + qkv.shape[1:]
mu = state.opt_state[0].mu["encoder"]["blocks"][0]["attn"]["qkv"]  # AdamW's first moment of the same weight
nu = state.opt_state[0].nu["encoder"]["blocks"][0]["attn"]["qkv"]
assert fsdp_spec(mu) and fsdp_spec(nu), (mu.sharding, nu.sharding)
sharded = [x for x in jax.tree.leaves(state.params) if "fsdp" in str(x.sharding.spec)]
assert len(sharded) >= len(jax.tree.leaves(state.params)) // 2, len(sharded)
# The batch splits over data x fsdp = 8 devices.
for bad in (["data.batch_size=12"], ["data.batch_size=16", "train.grad_accum_steps=4"]):
  fsdp = ["sharding.mode=fsdp", "mesh.data=2", "mesh.fsdp=4"]
  c2 = config_lib.load("configs/videomae_synthetic.py:runlocal", fsdp + bad)
  with pytest.raises(ConfigError, match="does not divide over the 8 data-parallel devices"):
    trainer_lib.Trainer(c2, mesh, 4, 8.0)
# dp mode replicates the same weight.
c3 = config_lib.load("configs/videomae_synthetic.py:runlocal", ["mesh.data=8"])
dp_shardings = trainer_lib.Trainer(c3, sharding.make_mesh(c3.mesh), 4, 8.0).state_shardings
dp = dp_shardings.params["encoder"]["blocks"][0]["attn"]["qkv"]
assert all(a is None for a in dp.spec), dp.spec
""",
    devices=8,
  )
