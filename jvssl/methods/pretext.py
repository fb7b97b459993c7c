"""Pretext tasks as classification heads on any backbone: playback speed, temporal order (sorting shuffled
segments), spatio-temporal jigsaw, rotation. Views and labels are made on the device from the clip
(jvssl/methods/views.py); all tasks' whole-clip views go through the encoder as one batch, a context-free
jigsaw's cells as another."""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry
from jvssl.errors import ConfigError
from jvssl.methods import heads, views
from jvssl.methods.base import Method
from jvssl.models import layers


class Task(NamedTuple):
  num_classes: int
  make: Callable  # (rng, video [B, T, H, W, C]) -> (views [B, T, H, W, C] or cells [B, N, t, h, w, C], labels [B]).
  cells: int = 0  # > 0: `make` returns this many cells per clip, each encoded alone (a context-free network).


def task_table(method) -> dict[str, Task]:
  """name -> Task for method.tasks."""
  order_perms = views.permutation_set(method.order_segments, method.order_permutations, method.permutation_seed)
  grid = tuple(method.jigsaw_grid)
  num_cells = grid[0] * grid[1] * grid[2]
  # Configs saved before these fields: cells abut, keep their brightness and are put back together.
  jigsaw_kw = dict(gap=method.get("jigsaw_gap", 0), standardize_cells=method.get("jigsaw_standardize_cells", False))
  context_free = method.get("jigsaw_context_free", False)
  jigsaw_perms = views.permutation_set(num_cells, method.jigsaw_permutations, method.permutation_seed)
  make_jigsaw = views.jigsaw_cells if context_free else views.jigsaw
  table = {
    "speed": Task(len(method.speeds), lambda rng, v: views.speed_views(rng, v, tuple(method.speeds))),
    "order": Task(len(order_perms), lambda rng, v: views.shuffle_segments(rng, v, order_perms)),
    "jigsaw": Task(
      len(jigsaw_perms),
      lambda rng, v: make_jigsaw(rng, v, jigsaw_perms, grid, **jigsaw_kw),
      num_cells if context_free else 0,
    ),
    "rotation": Task(4, views.rotate),
  }
  unknown = [t for t in method.tasks if t not in table]
  if unknown or not method.tasks:
    raise ConfigError(f"method.tasks must be a non-empty list of {list(table)}, got {list(method.tasks)}")
  if len(method.task_weights) != len(method.tasks):
    raise ConfigError(f"method.task_weights has {len(method.task_weights)} entries for {len(method.tasks)} tasks")
  return {t: table[t] for t in method.tasks}


def encode_alone(encoder, cells, rng):
  """cells [M, t, h, w, C], smaller than the encoder's input -> pooled [M, D], each cell seen with nothing around it.

  A token model (ViT) takes the cell's tokens alone, with the position embeddings of a block of its grid at a
  random place: drawn independently of where the cell came from, they tell the puzzle nothing, and over
  training every position of the table is seen (the frozen-feature evaluations use them all). Other
  backbones (3-D CNNs) take the cell as it is."""
  if not hasattr(encoder, "embed"):
    return encoder(cells, rng=rng)["pooled"]
  m, t, h, w, c = cells.shape
  patch, grid = encoder.patch_size, encoder.grid
  block = (t // patch[0], h // patch[1], w // patch[2])
  if any(n % p for n, p in zip((t, h, w), patch)):
    raise ConfigError(f"jigsaw cells of {t}x{h}x{w} do not split into tubelets of {'x'.join(map(str, patch))}")
  k_place, k_encode = jax.random.split(rng)
  corner = jax.random.randint(k_place, (m, 3), 0, np.array(grid) - np.array(block) + 1)
  canvas = jnp.zeros((m, *(g * p for g, p in zip(grid, patch)), c), cells.dtype)
  place = lambda frame, cell, o: jax.lax.dynamic_update_slice(frame, cell, (*(o * np.array(patch)), 0))
  canvas = jax.vmap(place)(canvas, cells, corner)
  block_ids = np.indices(block).reshape(3, -1).T  # [n, 3] grid offsets within the block.
  ids = jnp.ravel_multi_index(tuple((corner[:, None] + block_ids).transpose(2, 0, 1)), grid, mode="clip")
  return encoder.encode(encoder.embed(canvas, ids), k_encode, ids).mean(axis=1)


class PretextModel(nnx.Module):
  def __init__(self, config, *, rngs: nnx.Rngs):
    kw = dict(models.dtype_kw(config), rngs=rngs)
    self.encoder = models.build(config, rngs=rngs)
    width = self.encoder.width
    # A context-free task's head sees its cells' embeddings side by side, as the jigsaw papers' fc layers do.
    self.heads = nnx.Dict(
      {
        name: heads.MLP(task.cells * width, width, task.num_classes, **kw)
        if task.cells
        else layers.Dense(width, task.num_classes, axes=("embed", "classes"), **kw)
        for name, task in task_table(config.method).items()
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
        # (`views.jigsaw_cells`); 0: cells abut, and matching the pixels across a cut solves the puzzle.
        "jigsaw_gap": 0,
        # Standardise every jigsaw cell per channel, so that brightness and colour do not tell which cells were
        # neighbours (`views.jigsaw_cells`).
        "jigsaw_standardize_cells": False,
        # Each jigsaw cell through the encoder alone and the head on their embeddings side by side (Noroozi &
        # Favaro's context-free network; Kim et al.'s space-time cubic puzzles): the encoder never sees two
        # cells together, so it cannot place them by matching pixels across a cut and must describe what each
        # holds. False: the shuffled cells are put back together into one clip.
        "jigsaw_context_free": True,
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

  def task_features(self, model, clip, rng) -> dict[str, tuple[jax.Array, jax.Array]]:
    """clip [B, T, H, W, C] -> {task: (what its head reads [B, F], labels [B])}."""
    b = clip.shape[0]
    if self.config.method.get("view_standardize", False):  # Configs saved before the field: off.
      standardize = lambda v: views.standardize_views(v[:, None])[:, 0]
    else:
      standardize = lambda v: v
    view_rngs = jax.random.split(jax.random.fold_in(rng, 0), len(self.tasks))
    made = {}
    for (name, task), k in zip(self.tasks.items(), view_rngs):
      if task.cells:  # Standardised as a clip, so that the cells keep how they differ.
        made[name] = task.make(k, standardize(clip))
      else:
        v, labels = task.make(k, clip)
        made[name] = standardize(v), labels
    whole = [name for name, task in self.tasks.items() if not task.cells]
    features = {}
    if whole:
      pooled = model.encoder(jnp.concatenate([made[n][0] for n in whole]), rng=jax.random.fold_in(rng, 1))["pooled"]
      features.update({name: (pooled[i * b : (i + 1) * b], made[name][1]) for i, name in enumerate(whole)})
    for i, name in enumerate(n for n in self.tasks if n not in whole):
      cells, labels = made[name]
      pooled = encode_alone(model.encoder, cells.reshape(-1, *cells.shape[2:]), jax.random.fold_in(rng, 2 + i))
      features[name] = (pooled.reshape(b, -1), labels)
    return features

  def loss(self, model, batch, rng, step):
    features = self.task_features(model, batch["video"], rng)
    total, metrics = 0.0, {}
    for name, weight in zip(self.tasks, self.config.method.task_weights):
      x, labels = features[name]
      logits = model.heads[name](x).astype(jnp.float32)
      task_loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      total = total + weight * task_loss
      metrics[f"{name}_loss"] = task_loss
      metrics[f"{name}_accuracy"] = (logits.argmax(-1) == labels).mean()
    return total, metrics
