"""configs/ssl_synthetic.py has each pretext task alone as a variant; each trains a head for its task only."""

import jax
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib, registry
from jvssl.methods.base import RunLength

TASKS = ("speed", "order", "jigsaw", "rotation")


def one_task(task: str):
  config = config_lib.load(f"configs/ssl_synthetic.py:pretext_{task},runlocal")
  return config, registry.METHODS.get("pretext")(config, RunLength(num_steps=1, steps_per_epoch=1.0))


@pytest.mark.parametrize("task", TASKS)
def test_one_task_variant_names_only_its_task(task):
  config, method = one_task(task)
  assert config.method.name == "pretext" and tuple(config.method.tasks) == (task,)
  assert list(method.tasks) == [task]


def test_one_task_variant_trains_one_head_on_one_loss():
  config, method = one_task("order")
  model = method.build(nnx.Rngs(0))
  assert list(model.heads.keys()) == ["order"]
  d = config.data
  video = jax.random.uniform(jax.random.key(0), (2, d.num_frames, d.image_size, d.image_size, 3))
  loss, metrics = method.loss(model, {"video": video}, jax.random.key(1), 0)
  assert sorted(metrics) == ["order_accuracy", "order_loss"]
  np.testing.assert_allclose(loss, metrics["order_loss"], rtol=1e-6)


def test_all_tasks_together_is_still_the_plain_variant():
  assert tuple(config_lib.load("configs/ssl_synthetic.py:pretext,runlocal").method.tasks) == TASKS


@pytest.mark.parametrize("standardize", [True, False])
def test_standardized_views_hide_a_clips_colour_cast(standardize):
  # view_standardize: a per-channel gain and offset on the clip (another clip's colours) leaves every task's
  # loss as it was; without it the loss sees the colours.
  config = config_lib.load("configs/ssl_synthetic.py:pretext,runlocal")
  config.unlock()
  config.method.view_standardize = standardize
  method = registry.METHODS.get("pretext")(config, RunLength(num_steps=1, steps_per_epoch=1.0))
  model = method.build(nnx.Rngs(0))
  d = config.data
  video = jax.random.normal(jax.random.key(0), (2, d.num_frames, d.image_size, d.image_size, 3))
  recoloured = video * np.array([2.0, 0.5, 1.5], np.float32) + np.array([1.0, -2.0, 0.3], np.float32)
  _, plain = method.loss(model, {"video": video}, jax.random.key(1), 0)
  _, cast = method.loss(model, {"video": recoloured}, jax.random.key(1), 0)
  losses = [f"{task}_loss" for task in TASKS]
  if standardize:
    np.testing.assert_allclose([cast[k] for k in losses], [plain[k] for k in losses], rtol=1e-4, atol=1e-5)
  else:
    assert max(abs(float(cast[k]) - float(plain[k])) for k in losses) > 1e-3


def test_version_2_pretext_variants_standardize_their_views_and_cut_the_jigsaw_in_time():
  for variant in [f"pretext_{task}" for task in TASKS] + ["pretext"]:
    method = config_lib.load(f"configs/ssl_synthetic.py:{variant},version=2,runlocal").method
    assert method.view_standardize and tuple(method.jigsaw_grid) == (2, 2, 2)
  version_1 = config_lib.load("configs/ssl_synthetic.py:pretext,runlocal").method
  assert not version_1.view_standardize and tuple(version_1.jigsaw_grid) == (1, 2, 2)


def test_jigsaw_gap_reaches_the_task_views():
  config, method = one_task("jigsaw")
  config.method.jigsaw_gap = 4
  gapped = registry.METHODS.get("pretext")(config, RunLength(num_steps=1, steps_per_epoch=1.0))
  d = config.data
  clip = jax.random.normal(jax.random.key(0), (2, d.num_frames, d.image_size, d.image_size, 3)) + 3.0
  (_, make), (_, make_gapped) = method.tasks["jigsaw"], gapped.tasks["jigsaw"]
  assert not (np.asarray(make(jax.random.key(1), clip)[0]) == 0).any()
  puzzle = np.asarray(make_gapped(jax.random.key(1), clip)[0])
  assert (puzzle[:, :, :2] == 0).all() and (puzzle[:, :, 2:-2, 2:-2] != 0).any()
