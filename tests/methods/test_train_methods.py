"""Every method of configs/ssl_synthetic.py learns: its loss falls when it trains on one clean batch.

The trainings run in one subprocess (tests/methods/one_batch.py).
"""

import pytest

from tests.methods import one_batch

STEPS = 200

_PRELUDE = """
def config(method):
  c = config_lib.load(f"configs/ssl_synthetic.py:{method},runlocal")
  c.data.synthetic.background_texture = 0.0
  c.data.synthetic.pixel_noise = 0.0
  c.data.clips_per_video = 2  # One batch for all methods; those using one clip take the first.
  c.optimizer.lr, c.schedule.warmup_steps = 2e-3, 0
  return c

host_batch = next(pipeline.train_dataset(config("simclr")).as_numpy_iterator())
kernel = lambda tree: np.asarray(tree["encoder"]["blocks"][0]["mlp"]["fc1"]["kernel"])

def extras(method, trainer, state, initial, out):
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
"""

METHODS = ("simclr", "moco_v3", "byol", "dino", "vicreg", "pretext", "combined")


@pytest.fixture(scope="module")
def results():
  return one_batch.train(_PRELUDE, METHODS, STEPS)


@pytest.mark.parametrize("method", METHODS)
def test_loss_falls(results, method):
  history = results[method]["history"]
  # DINO's loss is H(teacher) + KL(teacher || student); centring raises the first, learning lowers the second.
  one_batch.assert_falls([h["kl" if method == "dino" else "loss"] for h in history])
  if method in ("simclr", "moco_v3", "byol", "dino", "vicreg"):
    assert history[-1]["collapsed"] == 0.0 and history[-1]["effective_rank"] > 2.0
  if method == "combined":
    one_batch.assert_falls([h["simclr/loss"] for h in history])
    one_batch.assert_falls([h["videomae/loss"] for h in history])


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
