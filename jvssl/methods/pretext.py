"""Pretext tasks as classification heads on any backbone: playback speed, temporal order (sorting shuffled
segments), spatio-temporal jigsaw, rotation. Views and labels are made on the device from the clip
(jvssl/methods/views.py); all tasks' views go through the encoder as one batch."""

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.errors import ConfigError
from jvssl.methods import views
from jvssl.methods.base import Method
from jvssl.models import layers


def task_table(method) -> dict:
  """name -> (number of classes, fn(rng, video [B, T, H, W, C]) -> (views, labels)) for method.tasks."""
  order_perms = views.permutation_set(method.order_segments, method.order_permutations, method.permutation_seed)
  grid = tuple(method.jigsaw_grid)
  # Configs saved before these fields: cells abut and keep their brightness.
  jigsaw_kw = dict(gap=method.get("jigsaw_gap", 0), standardize_cells=method.get("jigsaw_standardize_cells", False))
  jigsaw_perms = views.permutation_set(grid[0] * grid[1] * grid[2], method.jigsaw_permutations, method.permutation_seed)
  table = {
    "speed": (len(method.speeds), lambda rng, v: views.speed_views(rng, v, tuple(method.speeds))),
    "order": (len(order_perms), lambda rng, v: views.shuffle_segments(rng, v, order_perms)),
    "jigsaw": (len(jigsaw_perms), lambda rng, v: views.jigsaw(rng, v, jigsaw_perms, grid, **jigsaw_kw)),
    "rotation": (4, views.rotate),
  }
  unknown = [t for t in method.tasks if t not in table]
  if unknown or not method.tasks:
    raise ConfigError(f"method.tasks must be a non-empty list of {list(table)}, got {list(method.tasks)}")
  if len(method.task_weights) != len(method.tasks):
    raise ConfigError(f"method.task_weights has {len(method.task_weights)} entries for {len(method.tasks)} tasks")
  return {t: table[t] for t in method.tasks}


class PretextModel(nnx.Module):
  def __init__(self, config, *, rngs: nnx.Rngs):
    kw = dict(models.dtype_kw(config), rngs=rngs)
    self.encoder = models.build(config, rngs=rngs)
    self.heads = nnx.Dict(
      {
        name: layers.Dense(self.encoder.width, num_classes, axes=("embed", "classes"), **kw)
        for name, (num_classes, _) in task_table(config.method).items()
      }
    )


@registry.METHODS.register("pretext")
class Pretext(Method):
  """Weighted sum of the chosen tasks' cross-entropies."""

  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "tasks": ("speed", "order", "jigsaw", "rotation"),
        "task_weights": (1.0, 1.0, 1.0, 1.0),
        "speeds": (1, 2, 4, 8),  # Relative playback rates; the fastest plays the clip as it is.
        "order_segments": 4,  # Temporal order: segments to shuffle (num_frames must divide).
        "order_permutations": 12,  # Classes: the permutations of a fixed, far-apart set.
        "jigsaw_grid": (2, 2, 2),  # Jigsaw cells in (time, height, width).
        "jigsaw_permutations": 64,
        # Pixels between neighbouring jigsaw cells' contents, each cell's crop jittered by up to this much
        # (`views.jigsaw`); 0: cells abut, and matching the pixels across a cut solves the puzzle.
        "jigsaw_gap": 0,
        # Standardise every jigsaw cell per channel, so that brightness and colour do not tell which cells were
        # neighbours (`views.jigsaw`).
        "jigsaw_standardize_cells": False,
        "permutation_seed": 0,
        # Standardise every view per channel over its frames, in training only (`views.standardize_views`).
        # When clips differ in colour and contrast (the synthetic set's version 2), those decide a random
        # encoder's features and hide the few pixels a task's label shows in.
        "view_standardize": False,
      }
    )

  def __init__(self, config, run):
    super().__init__(config, run)
    self.tasks = task_table(config.method)

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return PretextModel(self.config, rngs=rngs)

  def loss(self, model, batch, rng, step):
    clip = batch["video"]
    b = clip.shape[0]
    view_rngs = jax.random.split(jax.random.fold_in(rng, 0), len(self.tasks))
    made = [fn(k, clip) for (_, fn), k in zip(self.tasks.values(), view_rngs)]
    if self.config.method.get("view_standardize", False):  # Configs saved before the field: off.
      made = [(views.standardize_views(v[:, None])[:, 0], labels) for v, labels in made]
    pooled = model.encoder(jnp.concatenate([v for v, _ in made]), rng=jax.random.fold_in(rng, 1))["pooled"]
    total, metrics = 0.0, {}
    for i, (name, weight) in enumerate(zip(self.tasks, self.config.method.task_weights)):
      logits = model.heads[name](pooled[i * b : (i + 1) * b]).astype(jnp.float32)
      labels = made[i][1]
      task_loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      total = total + weight * task_loss
      metrics[f"{name}_loss"] = task_loss
      metrics[f"{name}_accuracy"] = (logits.argmax(-1) == labels).mean()
    return total, metrics
