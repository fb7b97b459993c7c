"""Linear probe: multinomial logistic regression on frozen, standardised features.

The L2 strength is chosen on a held-out fifth of the training features, then
the probe is refit on all of them, so the test split is never used to tune.
The features stay sharded over the devices (`features.Features`): every step is
one jitted full-batch pass in which each device reads its own rows and only the
weights and their gradients cross devices.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.evaluate import features as features_lib

HOLDOUT_FRACTION = 0.2


def fit_logistic(x, y, weight, num_classes: int, l2, steps: int):
  """Full-batch L-BFGS on the weighted mean cross-entropy + l2/2 |W|^2.

  x [N, F], y int [N], weight [N] (0 leaves a row out). Returns (W [F, C], b [C]).
  """

  def loss(wb):
    w, b = wb
    ce = optax.softmax_cross_entropy_with_integer_labels(x @ w + b, y)
    return jnp.sum(weight * ce) / jnp.sum(weight) + 0.5 * l2 * jnp.sum(w * w)

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


_fit = jax.jit(fit_logistic, static_argnames=("num_classes", "steps"))


@jax.jit
def _correct(wb, x, y, weight) -> tuple[jax.Array, jax.Array]:
  """(weighted count of rows of x [N, F] the probe (W, b) labels y [N], total weight)."""
  w, b = wb
  return jnp.sum(weight * ((x @ w + b).argmax(-1) == y)), jnp.sum(weight)


def accuracy(wb, x, y, weight) -> float:
  correct, total = _correct(wb, x, y, weight)
  return float(correct) / float(total)


@jax.jit
def _prepare(train, test, held):
  """Both splits' x standardised by the mean and standard deviation of train's real rows, and the row weights:
  train's not held out, held out, all; test's."""
  weight = (train.mask > 0).astype(jnp.float32)
  count = jnp.sum(weight)
  mean = jnp.einsum("n,nf->f", weight, train.x) / count
  std = jnp.sqrt(jnp.einsum("n,nf->f", weight, jnp.square(train.x - mean)) / count) + 1e-6
  weights = weight * ~held, weight * held, weight, (test.mask > 0).astype(jnp.float32)
  return (train.x - mean) / std, (test.x - mean) / std, weights


def linear_probe(train: features_lib.Features, test: features_lib.Features, *, l2_grid, steps: int, seed: int = 0):
  """{"accuracy", "l2"}: the probe's test accuracy, with l2 chosen on a held-out fifth of `train`."""
  num_classes = features_lib.num_classes(train, test)
  held = features_lib.holdout(train, HOLDOUT_FRACTION, seed)
  train_x, test_x, (fit_weight, held_weight, train_weight, test_weight) = _prepare(train, test, held)
  # Rows left out weigh 0, so every fit has the same shapes and they share one compilation.
  fit = lambda w, l2: _fit(train_x, train.label, w, num_classes=num_classes, l2=l2, steps=steps)
  scores = [accuracy(fit(fit_weight, l2), train_x, train.label, held_weight) for l2 in l2_grid]
  best = float(l2_grid[int(np.argmax(scores))])
  return {"accuracy": accuracy(fit(train_weight, best), test_x, test.label, test_weight), "l2": best}


@registry.EVALUATORS.register("linear_probe")
class LinearProbe:
  @staticmethod
  def default_config() -> ConfigDict:
    return features_lib.evaluator_config(
      embedding="video",
      readout="mean",
      l2_grid=(1e-4, 1e-3, 1e-2, 1e-1),
      steps=300,
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del predictor, mesh  # The features come through the cache.
    train = cache.sharded(cfg.train_split, cfg.embedding, cfg.readout, cfg.num_train)
    test = cache.sharded(cfg.test_split, cfg.embedding, cfg.readout)
    return linear_probe(train, test, l2_grid=cfg.l2_grid, steps=cfg.steps, seed=config.seed)
