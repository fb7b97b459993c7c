"""configs/ssl_synthetic.py has each pretext task alone as a variant; each trains a head for its task only."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl import config as config_lib, registry
from jvssl.errors import ConfigError
from jvssl.methods import pretext, views
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


def test_version_2_pretext_variants_standardize_their_views_and_cut_the_jigsaw_in_time_into_cells_seen_alone():
  for variant in [f"pretext_{task}" for task in TASKS] + ["pretext"]:
    method = config_lib.load(f"configs/ssl_synthetic.py:{variant},version=2,runlocal").method
    assert method.view_standardize and tuple(method.jigsaw_grid) == (2, 2, 2) and method.jigsaw_context_free
    assert method.jigsaw_gap > 0
  version_1 = config_lib.load("configs/ssl_synthetic.py:pretext,runlocal").method
  assert not version_1.view_standardize and tuple(version_1.jigsaw_grid) == (1, 2, 2)
  assert not version_1.jigsaw_context_free


def test_jigsaw_gap_reaches_the_task_views():
  config, method = one_task("jigsaw")
  config.method.jigsaw_gap = 4
  gapped = registry.METHODS.get("pretext")(config, RunLength(num_steps=1, steps_per_epoch=1.0))
  d = config.data
  clip = jax.random.normal(jax.random.key(0), (2, d.num_frames, d.image_size, d.image_size, 3)) + 3.0
  make, make_gapped = method.tasks["jigsaw"].make, gapped.tasks["jigsaw"].make
  assert not (np.asarray(make(jax.random.key(1), clip)[0]) == 0).any()
  puzzle = np.asarray(make_gapped(jax.random.key(1), clip)[0])
  assert (puzzle[:, :, :2] == 0).all() and (puzzle[:, :, 2:-2, 2:-2] != 0).any()


def context_free_jigsaw(**fields):
  config, _ = one_task("jigsaw")
  config.method.jigsaw_context_free, config.method.jigsaw_grid = True, (2, 2, 2)
  config.method.update(fields)
  method = registry.METHODS.get("pretext")(config, RunLength(num_steps=1, steps_per_epoch=1.0))
  return config, method, method.build(nnx.Rngs(0))


def test_context_free_jigsaw_sees_each_cell_alone():
  # New pixels in one cell change the embedding of the slot that cell was shuffled to, and no other: no cell's
  # embedding can depend on its neighbours, so the puzzle cannot be solved by matching pixels across a cut.
  config, method, model = context_free_jigsaw()
  d = config.data
  t, s = d.num_frames, d.image_size
  clip = jax.random.normal(jax.random.key(0), (3, t, s, s, 3))
  changed = clip.at[:, : t // 2, : s // 2, s // 2 :].add(1.0)  # Cell 1: first half in time, top, right.
  rng = jax.random.key(1)
  features, labels = method.task_features(model, clip, rng)["jigsaw"]
  changed_features, same_labels = method.task_features(model, changed, rng)["jigsaw"]
  np.testing.assert_array_equal(labels, same_labels)
  assert features.shape == (3, 8 * model.encoder.width)
  moved = np.abs(np.asarray(changed_features - features)).reshape(3, 8, -1).max(-1) > 1e-4
  perms = views.permutation_set(8, config.method.jigsaw_permutations, config.method.permutation_seed)
  np.testing.assert_array_equal(moved, perms[np.asarray(labels)] == 1)


def test_context_free_cells_take_the_position_embeddings_of_a_random_block():
  config, _, model = context_free_jigsaw()
  encoder = model.encoder
  (gt, gh, gw), (pt, ph, pw) = encoder.grid, encoder.patch_size
  cell = jax.random.normal(jax.random.key(0), (1, pt, 2 * ph, 2 * pw, 3))
  references = {}
  for corner in itertools.product(range(gt), range(gh - 1), range(gw - 1)):
    canvas = np.zeros((1, gt * pt, gh * ph, gw * pw, 3), np.float32)
    canvas[:, corner[0] * pt : corner[0] * pt + pt, corner[1] * ph : corner[1] * ph + 2 * ph][
      :, :, :, corner[2] * pw : corner[2] * pw + 2 * pw
    ] = cell
    ids = np.array(
      [
        [
          np.ravel_multi_index((corner[0], corner[1] + i, corner[2] + j), encoder.grid)
          for i in range(2)
          for j in range(2)
        ]
      ]
    )
    tokens = encoder.embed(jnp.asarray(canvas))[:, ids[0]]  # All tokens embedded, the block's picked.
    references[corner] = np.asarray(encoder.encode(tokens, None, jnp.asarray(ids)).mean(1))
  placed = set()
  for k in range(12):
    got = np.asarray(pretext.encode_alone(encoder, cell, jax.random.key(k)))
    match = [c for c, ref in references.items() if np.allclose(got, ref, atol=1e-5)]
    assert len(match) == 1
    placed.add(match[0])
  assert len(placed) > 1


def test_context_free_cells_must_split_into_tubelets():
  with pytest.raises(ConfigError, match="tubelets"):
    config, method, model = context_free_jigsaw(jigsaw_grid=(4, 1, 1), jigsaw_permutations=4)
    d = config.data
    method.loss(model, {"video": jnp.zeros((2, d.num_frames, d.image_size, d.image_size, 3))}, jax.random.key(0), 0)
