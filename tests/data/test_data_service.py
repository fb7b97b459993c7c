"""Training input through an in-process tf.data service (a dispatcher and two workers) gives the local
pipeline's batches in the local order."""

import jax
import numpy as np
import pytest

from jvssl import config as config_lib, train
from jvssl.data import pipeline, service
from jvssl.errors import ConfigError, DataError


def _batches(config, start_step, n):
  it = pipeline.numpy_batches(pipeline.train_dataset(config, start_step=start_step))
  return [next(it) for _ in range(n)]


def test_service_gives_the_local_batches_in_order(tiny_config):
  local = _batches(tiny_config, 3, 6)
  tiny_config.data.service.address = "in_process:2"
  served = _batches(tiny_config, 3, 6)
  for a, b in zip(local, served):
    assert sorted(a) == sorted(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_training_through_the_service_equals_local_training(tiny_config, tmp_path):
  c = tiny_config
  c.train.num_steps = 3
  with c.unlocked():
    c.evals = {}
  local = train.train(c, str(tmp_path / "local"))
  c.data.service.address = "in_process:2"
  served = train.train(c, str(tmp_path / "served"))
  for a, b in zip(jax.tree.leaves(local.state.params), jax.tree.leaves(served.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _batch(step, first=0, max_reorder=3):
  return {"x": np.array([step]), service.STEP_KEY: np.array([step, first, max_reorder])}


def test_in_order_reorders_and_reports_a_lost_batch():
  arrived = [_batch(s, first=2) for s in (3, 2, 5, 4, 6)]
  assert [int(b["x"][0]) for b in service.in_order(iter(arrived))] == [2, 3, 4, 5, 6]
  lost = [_batch(s) for s in (1, 2, 3, 4)]  # Step 0 never comes.
  with pytest.raises(DataError, match="step 0"):
    list(service.in_order(iter(lost)))


def test_workers_in_other_processes_are_refused_python_steps(tiny_config):
  tiny_config.data.service.address = "grpc://localhost:1"
  with pytest.raises(ConfigError, match="in_process:N"):
    pipeline.train_dataset(tiny_config)


@pytest.mark.parametrize("address", ["localhost:5050", "in_process:x"])
def test_bad_addresses_are_refused(tiny_config, address):
  tiny_config.data.service.address = address
  with pytest.raises(ConfigError, match="data.service.address"):
    config_lib.validate(tiny_config)
