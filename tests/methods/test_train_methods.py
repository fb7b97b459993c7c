"""Every method of configs/ssl_synthetic.py learns: its loss falls when it trains on one clean batch.

The trainings run in one subprocess with XLA's backend optimisations off: compiling the six steps, not
running them, is what these tests spend their time on.
"""

import json

import numpy as np
import pytest

from tests.conftest import run_python

STEPS = 200

_CODE = """
import json, os
os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
import jax
import numpy as np
from jvssl import config as config_lib, sharding, trainer as trainer_lib
from jvssl.data import pipeline

def config(method):
  c = config_lib.load(f"configs/ssl_synthetic.py:{method},runlocal")
  c.data.synthetic.background_texture = 0.0
  c.data.synthetic.pixel_noise = 0.0
  c.data.clips_per_video = 2  # One batch for all methods; those using one clip take the first.
  c.optimizer.lr, c.schedule.warmup_steps = 2e-3, 0
  return c

host_batch = next(pipeline.train_dataset(config("simclr")).as_numpy_iterator())
kernel = lambda tree: np.asarray(tree["encoder"]["blocks"][0]["mlp"]["fc1"]["kernel"])
results = {}
for method in %(methods)r:
  c = config(method)
  trainer = trainer_lib.Trainer(c, sharding.make_mesh(c.mesh), %(steps)d, 1.0)
  state = trainer.init(0)
  initial = jax.tree.map(np.asarray, state.rest)
  batch = pipeline.to_global(host_batch, trainer.mesh, trainer.rules)
  history = []
  for _ in range(%(steps)d):
    state, metrics = trainer.step(state, batch)
    history.append({k: float(v) for k, v in metrics.items()})
  out = {"history": history}
  if "teacher" in state.rest:
    out["teacher_to_start"] = float(np.abs(kernel(state.rest["teacher"]) - kernel(initial["teacher"])).mean())
    out["teacher_to_student"] = float(np.abs(kernel(state.rest["teacher"]) - kernel(state.params)).mean())
    out["start_to_student"] = float(np.abs(kernel(initial["teacher"]) - kernel(state.params)).mean())
  if method == "dino":
    out["center_abs"] = float(np.abs(np.asarray(state.rest["center"])).sum())
  if method == "combined":
    out["part_keys"] = {k: sorted(v) for k, v in state.params["parts"].items()}
    embed = trainer.predictor(state).fns["embed_video"]
    model = trainer.predictor(state).module()
    out["encoder_pooled"] = list(embed(model, {"video": np.zeros((1, 4, 32, 32, 3), np.float32)}).shape)
  results[method] = out
print("RESULTS" + json.dumps(results))
"""

METHODS = ("simclr", "moco_v3", "byol", "dino", "vicreg", "pretext", "combined")


@pytest.fixture(scope="module")
def results():
  proc = run_python(_CODE % {"methods": METHODS, "steps": STEPS})
  return json.loads(proc.stdout.split("RESULTS", 1)[1])


def _falls(values):
  assert np.isfinite(values).all()
  assert np.mean(values[-5:]) < 0.9 * np.mean(values[:5]), values


@pytest.mark.parametrize("method", METHODS)
def test_loss_falls(results, method):
  history = results[method]["history"]
  # DINO's loss is H(teacher) + KL(teacher || student); centring raises the first, learning lowers the second.
  _falls([h["kl" if method == "dino" else "loss"] for h in history])
  if method in ("simclr", "moco_v3", "byol", "dino", "vicreg"):
    assert history[-1]["collapsed"] == 0.0 and history[-1]["effective_rank"] > 2.0
  if method == "combined":
    _falls([h["simclr/loss"] for h in history])
    _falls([h["videomae/loss"] for h in history])


@pytest.mark.parametrize("method", ["moco_v3", "byol", "dino"])
def test_momentum_teacher_follows_the_student(results, method):
  r = results[method]
  assert r["teacher_to_start"] > 0  # It moved, although it has no gradient...
  assert r["teacher_to_student"] < r["start_to_student"]  # ...towards the student.


def test_dino_centre_updates_and_teacher_temperature_follows_the_step(results):
  assert results["dino"]["center_abs"] > 0
  history = results["dino"]["history"]
  # ssl_synthetic's DINO warms the teacher temperature up from 0.04 to 0.07 over the config's first steps.
  assert history[0]["teacher_temp"] == pytest.approx(0.04)
  assert history[-1]["teacher_temp"] == pytest.approx(0.07)


def test_combined_methods_share_one_encoder(results):
  r = results["combined"]
  assert "encoder" not in r["part_keys"]["simclr"] and "encoder" not in r["part_keys"]["videomae"]
  assert r["encoder_pooled"] == [1, 32]
