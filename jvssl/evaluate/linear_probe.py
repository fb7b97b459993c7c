"""Linear probe: multinomial logistic regression on frozen, standardised features.

The L2 strength is chosen on a held-out fifth of the training features, then
the probe is refit on all of them, so the test split is never used to tune.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from jvssl import registry


def fit_logistic(x, y, num_classes: int, l2: float, steps: int):
  """Full-batch L-BFGS on mean cross-entropy + l2/2 |W|^2. Returns (W [F, C], b [C])."""
  x, y = jnp.asarray(x), jnp.asarray(y)

  def loss(wb):
    w, b = wb
    logits = x @ w + b
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + 0.5 * l2 * jnp.sum(w * w)

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


def accuracy(wb, x, y) -> float:
  w, b = wb
  return float((np.asarray(jnp.asarray(x) @ w + b).argmax(-1) == y).mean())


def linear_probe(train_x, train_y, test_x, test_y, *, l2_grid, steps: int, seed: int = 0) -> dict:
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  num_classes = int(max(train_y.max(), test_y.max())) + 1
  order = np.random.default_rng(seed).permutation(len(train_x))
  held = order[: len(order) // 5]
  fit = order[len(order) // 5 :]
  scores = [
    accuracy(
      _fit(train_x[fit], train_y[fit], num_classes=num_classes, l2=l2, steps=steps), train_x[held], train_y[held]
    )
    for l2 in l2_grid
  ]
  best = float(l2_grid[int(np.argmax(scores))])
  wb = _fit(train_x, train_y, num_classes=num_classes, l2=best, steps=steps)
  return {"accuracy": accuracy(wb, test_x, test_y), "l2": best}


@registry.EVALUATORS.register("linear_probe")
class LinearProbe:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "train_split": "train",
        "test_split": "test",
        "num_train": 0,
        "embedding": "video",
        "readout": "mean",
        "l2_grid": (1e-4, 1e-3, 1e-2, 1e-1),
        "steps": 300,
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del predictor, mesh  # The features come through the cache.
    train_x, train_y = cache.get(cfg.train_split, cfg.embedding, cfg.readout, cfg.num_train)
    test_x, test_y = cache.get(cfg.test_split, cfg.embedding, cfg.readout)
    return linear_probe(train_x, train_y, test_x, test_y, l2_grid=cfg.l2_grid, steps=cfg.steps, seed=config.seed)
