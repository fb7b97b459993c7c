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
