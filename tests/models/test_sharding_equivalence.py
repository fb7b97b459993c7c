"""The same train step gives the same loss, parameters and batch statistics on one device and on
8 simulated CPU devices under the data-parallel, FSDP and tensor-parallel rule sets."""

from conftest import run_python

CODE = r"""
import sys, time
import jax, numpy as np
from jvssl import config as config_lib, sharding, trainer as trainer_lib

def vit_videomae():
  c = config_lib.load("configs/videomae_synthetic.py:runlocal")
  c.unlock()
  return c

def r3d_classify():
  c = config_lib.base_config(model="r3d", method="classify")
  c.model.depth = 10
  c.method.num_classes = 3
  c.data.num_frames, c.data.image_size = 4, 16
  return c

MODES = {"dp": {"data": 8, "fsdp": 1, "model": 1}, "fsdp": {"data": 4, "fsdp": 2, "model": 1},
         "tp": {"data": 4, "fsdp": 1, "model": 2}}

def run(config, mode, mesh_shape, devices):
  config.sharding.mode = mode
  if "fsdp" in mode and config.method.name == "videomae":
    # encoder_to_decoder is ("embed", "decoder_embed"), both -> "fsdp": a spec may use a mesh axis once.
    config.sharding.rules = (("decoder_embed", None),)
  config.mesh.update(mesh_shape)
  # Plain SGD: the parameter change is lr * gradient, so gradient differences show directly.
  config.optimizer.name, config.optimizer.b1, config.optimizer.weight_decay = "sgd", 0.0, 0.0
  config.optimizer.lr, config.schedule.warmup_steps = 0.1, 0
  config.data.batch_size = 8
  mesh = sharding.make_mesh(config.mesh, devices)
  trainer = trainer_lib.Trainer(config, mesh, 10, 10.0)
  state = trainer.init(0)
  rng = np.random.default_rng(0)
  size, frames = config.data.image_size, config.data.num_frames
  local = {"video": rng.integers(0, 255, (8, frames, size, size, 3), dtype=np.uint8),
           "label": rng.integers(0, 3, (8,)).astype(np.int32)}
  batch = {k: jax.device_put(v, sharding.batch_sharding(mesh, trainer.rules, v.ndim)) for k, v in local.items()}
  leaves = lambda t: [np.asarray(x) for x in jax.tree.leaves(t)]
  rest0 = leaves(state.rest)
  state, metrics = trainer.step(state, batch)
  shards = sorted({str(x.sharding.spec) for x in jax.tree.leaves(state.params)})
  return float(metrics["loss"]), leaves(state.params), leaves(state.rest), rest0, shards

# The CNN's parameters have no sharding rule (conv channels rarely divide a mesh axis): what differs
# across rule sets is only the batch split, so data parallel covers its cross-device BatchNorm.
for name, make, modes in (("vit_videomae", vit_videomae, MODES), ("r3d_classify", r3d_classify, ["dp"])):
  loss1, params1, rest1, rest0, _ = run(make(), "dp", {"data": 1, "fsdp": 1, "model": 1}, jax.devices()[:1])
  moved = max([float(np.abs(a - b).max()) for a, b in zip(rest1, rest0)] or [0.0])
  print(name, "batch statistics moved by", moved)
  for mode in modes:
    t0 = time.time()
    loss, params, rest, _, shards = run(make(), mode, MODES[mode], jax.devices())
    assert abs(loss - loss1) <= 1e-5 * max(1.0, abs(loss1)), (name, mode, loss, loss1)
    dp = max(float(np.abs(a - b).max()) for a, b in zip(params, params1))
    dr = max([float(np.abs(a - b).max()) for a, b in zip(rest, rest1)] or [0.0])
    assert dp <= 1e-5 and dr <= 1e-5, (name, mode, dp, dr)
    print(f"{name} {mode}: {time.time() - t0:.1f}s", file=sys.stderr)
    print(name, mode, "loss", loss, "max param diff", dp, "max rest diff", dr, "param specs", shards)
print("OK")
"""


def test_rule_sets_match_one_device():
  out = run_python(CODE, devices=8, optimize=False).stdout
  assert out.strip().endswith("OK")
  lines = out.splitlines()
  # FSDP and TP really shard the ViT's parameters (otherwise the test would compare replicas).
  assert any("vit_videomae fsdp" in line and "'fsdp'" in line for line in lines), out
  assert any("vit_videomae tp" in line and "'model'" in line for line in lines), out
  # The CNN's BatchNorm statistics live in the state's `rest` and move in the step (global-batch mean).
  moved = [float(line.split()[-1]) for line in lines if line.startswith("r3d_classify batch statistics moved")]
  assert moved and moved[0] > 1e-4, out
