"""Contrastive losses take their negatives from the whole global batch: on 8 simulated devices
(the batch split 8 ways) the loss and the updated parameters equal those of one device."""

import json

import pytest

from conftest import run_python

CODE = r"""
import json, sys
import jax, numpy as np
from jvssl import config as config_lib, sharding, trainer as trainer_lib

method, devices = sys.argv[1], int(sys.argv[2])
c = config_lib.load(f"configs/ssl_synthetic.py:{method},runlocal")
c.unlock()
c.mesh.update({"data": devices, "fsdp": 1, "model": 1})
c.data.batch_size = 8
c.optimizer.name, c.optimizer.b1, c.optimizer.weight_decay = "sgd", 0.0, 0.0
c.optimizer.lr, c.schedule.warmup_steps = 0.1, 0
mesh = sharding.make_mesh(c.mesh, jax.devices()[:devices])
trainer = trainer_lib.Trainer(c, mesh, 10, 10.0)
state = trainer.init(0)
rng = np.random.default_rng(0)
f, s = c.data.num_frames, c.data.image_size
video = rng.integers(0, 255, (8, c.data.clips_per_video, f, s, s, 3), dtype=np.uint8)
local = {"video": video, "label": np.zeros((8,), np.int32)}
batch = {k: jax.device_put(v, sharding.batch_sharding(mesh, trainer.rules, v.ndim)) for k, v in local.items()}
state, metrics = trainer.step(state, batch)
params = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(state.params)])
print(json.dumps({"loss": float(metrics["loss"]), "params": params[:: max(len(params) // 5000, 1)].tolist()}))
"""


@pytest.mark.parametrize("method", ["simclr", "moco_v3"])
def test_loss_on_8_devices_equals_one_device(method):
  import numpy as np

  runs = {}
  for devices in (1, 8):
    out = run_python(CODE.replace("sys.argv[1], int(sys.argv[2])", f"{method!r}, {devices}"), devices=8, optimize=False)
    runs[devices] = json.loads(out.stdout.strip().splitlines()[-1])
  # Each device's queries meet all 8 clips' keys: with only local negatives the loss would be a different number.
  np.testing.assert_allclose(runs[8]["loss"], runs[1]["loss"], rtol=1e-5)
  np.testing.assert_allclose(runs[8]["params"], runs[1]["params"], rtol=1e-4, atol=1e-6)
