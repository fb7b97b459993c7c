import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from jvssl import sharding
from jvssl.evaluate import features
from jvssl.evaluate.linear_probe import linear_probe

from conftest import run_python

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
STEPS = 30


def _host_fit(x, y, num_classes: int, l2: float, steps: int):
  """The probe as it was before features stayed sharded: L-BFGS on host arrays gathered whole."""
  x, y = jnp.asarray(x), jnp.asarray(y)

  def loss(wb):
    w, b = wb
    return optax.softmax_cross_entropy_with_integer_labels(x @ w + b, y).mean() + 0.5 * l2 * jnp.sum(w * w)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def body(carry, _):
    wb, state = carry
    value, grad = value_and_grad(wb, state=state)
    updates, state = opt.update(grad, state, wb, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(wb, updates), state), value

  wb0 = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))
  (wb, _), _ = jax.lax.scan(body, (wb0, opt.init(wb0)), None, length=steps)
  return wb


def host_linear_probe(train_x, train_y, test_x, test_y, *, l2_grid, steps: int, seed: int = 0) -> dict:
  fit = jax.jit(_host_fit, static_argnames=("num_classes", "steps"))
  accuracy = lambda wb, x, y: float((np.asarray(jnp.asarray(x) @ wb[0] + wb[1]).argmax(-1) == y).mean())
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  num_classes = int(max(train_y.max(), test_y.max())) + 1
  order = np.random.default_rng(seed).permutation(len(train_x))
  held, rest = order[: len(order) // 5], order[len(order) // 5 :]
  scores = [
    accuracy(
      fit(train_x[rest], train_y[rest], num_classes=num_classes, l2=l2, steps=steps), train_x[held], train_y[held]
    )
    for l2 in l2_grid
  ]
  best = float(l2_grid[int(np.argmax(scores))])
  wb = fit(train_x, train_y, num_classes=num_classes, l2=best, steps=steps)
  return {"accuracy": accuracy(wb, test_x, test_y), "l2": best}


def blobs(seed: int = 0, n_train: int = 203, n_test: int = 101, dim: int = 16, num_classes: int = 4):
  """Overlapping Gaussian classes: accuracy well below 1, so a changed probe shows."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_classes, dim))

  def split(n):
    y = rng.integers(0, num_classes, n)
    return (centres[y] + 1.5 * rng.normal(size=(n, dim))).astype(np.float32), y.astype(np.int32)

  return split(n_train), split(n_test)


def data_mesh():
  """All devices on the mesh's data axis."""
  return sharding.make_mesh(ConfigDict(dict(data=-1, fsdp=1, model=1, dcn_data=1, dcn_fsdp=1, dcn_model=1)))


@pytest.fixture(scope="module")
def host_result():
  (train_x, train_y), (test_x, test_y) = blobs()
  return host_linear_probe(train_x, train_y, test_x, test_y, l2_grid=L2_GRID, steps=STEPS)


def test_sharded_probe_equals_the_host_probe(host_result):
  (train_x, train_y), (test_x, test_y) = blobs()
  mesh, rules = data_mesh(), sharding.RULE_SETS["dp"]
  train = features.from_host(train_x, train_y, mesh, rules)
  test = features.from_host(test_x, test_y, mesh, rules)
  assert 0.5 < host_result["accuracy"] < 0.95
  assert linear_probe(train, test, l2_grid=L2_GRID, steps=STEPS) == host_result


_EIGHT_DEVICES = """
import numpy as np
from ml_collections import ConfigDict
from jvssl import config as config_lib, sharding
from jvssl.evaluate import attentive_probe, features
from jvssl.evaluate.knn import knn_accuracy
from jvssl.evaluate.linear_probe import linear_probe

d = np.load("{blobs}")
mesh = sharding.make_mesh(ConfigDict(dict(data=-1, fsdp=1, model=1, dcn_data=1, dcn_fsdp=1, dcn_model=1)))
rules = sharding.RULE_SETS["dp"]
train = features.from_host(d["train_x"], d["train_y"], mesh, rules)
test = features.from_host(d["test_x"], d["test_y"], mesh, rules)
# 203 training rows pad to 208: 26 per device, the padding weighing nothing.
assert train.x.shape == (208, 16) and len(train.x.addressable_shards) == 8, train.x.shape
x, y = train.to_host()
assert np.array_equal(x, d["train_x"]) and np.array_equal(y, d["train_y"])
held = np.asarray(train.index)[np.asarray(features.holdout(train, 0.2, seed=0))]
assert sorted(held.tolist()) == sorted(d["held"].tolist())
result = linear_probe(train, test, l2_grid={l2_grid}, steps={steps})
assert result == {want}, result
accuracy = knn_accuracy(train, test, k=20, temperature=0.07, num_classes=4, chunk=32)
assert accuracy == {knn}, accuracy

# The attentive probe's batches: each device takes its rows from its own 26.
tokens = features.from_host(d["train_x"].reshape(-1, 4, 4), d["train_y"], mesh, rules)
cfg = config_lib.eval_config(
  "attentive_probe", depth=1, num_heads=2, lrs=(3e-2,), weight_decays=(0.01,), batch_size=16, num_epochs=3
)
_, _, held = attentive_probe.fit_on_features(cfg, tokens, 4, seed=0)
assert held.shape == (1,) and held[0] > 0.4, held  # Chance is 0.25.
"""


def test_eight_devices_give_the_host_results(host_result, tmp_path):
  """The linear probe, k-NN and the held-out clips on features sharded over 8 devices are the host versions';
  the attentive probe trains there."""
  from test_knn import host_knn_predict

  (train_x, train_y), (test_x, test_y) = blobs()
  knn = float((host_knn_predict(train_x, train_y, test_x, k=20, temperature=0.07, num_classes=4) == test_y).mean())
  held = np.random.default_rng(0).permutation(len(train_x))[: len(train_x) // 5]
  path = tmp_path / "blobs.npz"
  np.savez(path, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, held=held)
  code = _EIGHT_DEVICES.format(blobs=path, l2_grid=L2_GRID, steps=STEPS, want=host_result, knn=knn)
  run_python(code, devices=8, optimize=False)
