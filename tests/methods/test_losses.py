import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jvssl.methods import embedding, losses


def _reference_info_nce(z, num_views, temperature):
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  sims = z @ z.T / temperature
  total = 0.0
  for i in range(len(z)):
    others = [a for a in range(len(z)) if a != i]
    lse = np.log(np.sum(np.exp(sims[i, others])))
    positives = [p for p in others if p // num_views == i // num_views]
    total += lse - np.mean(sims[i, positives])
  return total / len(z)


def test_info_nce_matches_a_direct_computation():
  z = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
  for views in (2, 3):
    np.testing.assert_allclose(
      losses.info_nce(jnp.asarray(z), views, 0.1), _reference_info_nce(z, views, 0.1), rtol=1e-5
    )


def test_moco_loss_prefers_matching_keys():
  q = jax.random.normal(jax.random.key(0), (8, 16))
  shuffled = q[::-1]
  assert losses.moco_loss(q, q, 0.2) < losses.moco_loss(q, shuffled, 0.2)


def test_dino_centre_is_an_ema_of_teacher_means():
  teacher = jax.random.normal(jax.random.key(1), (2, 4, 6))
  center = jnp.ones((6,))
  expected = 0.9 * center + 0.1 * teacher.mean(axis=(0, 1))
  np.testing.assert_allclose(losses.update_center(center, teacher, 0.9), expected, rtol=1e-6)


def test_dino_loss_skips_same_view_pairs_and_sharpens():
  t = jax.random.normal(jax.random.key(2), (2, 4, 6))
  # Student views equal to their own teacher views but swapped between views: only cross pairs count.
  swapped = t[::-1] / 0.04 * 0.1
  same = t / 0.04 * 0.1
  assert losses.dino_loss(swapped, t, jnp.zeros(6), 0.1, 0.04) < losses.dino_loss(same, t, jnp.zeros(6), 0.1, 0.04)


def test_collapse_watch_flags_collapsed_embeddings():
  spread = jax.random.normal(jax.random.key(3), (64, 16))
  collapsed = jnp.ones((64, 16)) + 1e-5 * spread
  ok, bad = losses.collapse_watch(spread), losses.collapse_watch(collapsed)
  assert float(ok["collapsed"]) == 0.0 and float(bad["collapsed"]) == 1.0
  assert float(ok["embed_std"]) > 0.1 / 4 > float(bad["embed_std"])
  line = losses.embedding_stats(jnp.outer(jnp.arange(1.0, 65.0), jnp.ones(16)) + jnp.eye(64, 16) * 0)
  assert float(line["effective_rank"]) < 1.5 < float(ok["effective_rank"])


def test_update_teacher_moves_teacher_weights_and_keeps_its_statistics():
  class Student(nnx.Module):
    def __init__(self, rngs):
      self.linear = nnx.Linear(3, 2, rngs=rngs)
      self.norm = nnx.BatchNorm(2, rngs=rngs)

  student = Student(nnx.Rngs(0))
  teacher = embedding.momentum_copy(student)
  teacher.norm.mean[...] = jnp.full(2, 5.0)  # The teacher's own batch statistics: not the student's to move.
  start = np.asarray(teacher.linear.kernel[...])
  student.linear.kernel[...] = student.linear.kernel[...] + 1.0
  embedding.update_teacher(teacher, student, 0.75)
  assert isinstance(teacher.linear.kernel, embedding.Teacher)
  np.testing.assert_allclose(
    teacher.linear.kernel[...], 0.75 * start + 0.25 * np.asarray(student.linear.kernel[...]), rtol=1e-6
  )
  np.testing.assert_allclose(teacher.norm.mean[...], 5.0)
  assert float(embedding.cosine_momentum(0.99, jnp.array(0), 100)) == np.float32(0.99)
  assert float(embedding.cosine_momentum(0.99, jnp.array(100), 100)) == 1.0
