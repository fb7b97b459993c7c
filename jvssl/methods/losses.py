"""Objectives shared by the embedding methods: InfoNCE / NT-Xent, MoCo, BYOL, DINO, and the collapse watch.

Everything takes global-batch arrays inside `jax.jit`. The similarity matrices
are computed between this device's rows (sharded over "batch") and *all* keys
(constrained to be replicated), so the negatives of every query are the whole
global batch: the replication constraint is the cross-device all-gather, made
explicit rather than left to the partitioner.
"""

import logging
import time

import jax
import jax.numpy as jnp

from jvssl import sharding

log = logging.getLogger("jvssl")


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def _rows_and_keys(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """x [N, D] -> (x sharded by rows over the batch axes, x gathered on every device)."""
  return sharding.constrain(x, ("batch", None)), sharding.constrain(x, (None, None))


def info_nce(z: jax.Array, num_views: int, temperature: float) -> jax.Array:
  """NT-Xent over several views per video (SimCLR for 2 views, CVRL's clips for K).

  z: [B * V, D] embeddings, batch-major (rows i*V .. i*V+V-1 are the V views of
  video i). Each row's positives are the other views of its video, its
  negatives every other row of the global batch. Returns the mean over rows of
  logsumexp_{a != i} s_ia - mean_{p in P(i)} s_ip (the multi-positive form; for
  V = 2 exactly SimCLR's loss).
  """
  if num_views < 2:
    raise ValueError(f"InfoNCE needs at least 2 views per video, got {num_views}")
  z = l2_normalize(z)
  rows, keys = _rows_and_keys(z)
  n = z.shape[0]
  logits = rows @ keys.T / temperature  # [N, N], rows sharded over devices.
  video = jnp.arange(n) // num_views
  self_mask = jnp.eye(n, dtype=bool)
  positive = (video[:, None] == video[None, :]) & ~self_mask
  denominator = jax.nn.logsumexp(jnp.where(self_mask, -jnp.inf, logits), axis=1)
  positives = jnp.sum(jnp.where(positive, logits, 0.0), axis=1) / (num_views - 1)
  return jnp.mean(denominator - positives)


def moco_loss(q: jax.Array, k: jax.Array, temperature: float) -> jax.Array:
  """MoCo v3: cross-entropy of each query against all keys of the global batch, its own as the target.

  q, k: [B, D] (k from the momentum encoder, gradients stopped). Scaled by 2 * temperature as in MoCo v3.
  """
  q, k = l2_normalize(q), jax.lax.stop_gradient(l2_normalize(k))
  rows, _ = _rows_and_keys(q)
  _, keys = _rows_and_keys(k)
  logits = rows @ keys.T / temperature
  labels = jnp.arange(q.shape[0])
  log_probs = jax.nn.log_softmax(logits, axis=1)
  return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1)) * 2.0 * temperature


def byol_loss(p: jax.Array, z: jax.Array) -> jax.Array:
  """BYOL: 2 - 2 cos(p, z), averaged over the batch. p: online predictions [B, D]; z: targets [B, D]."""
  p, z = l2_normalize(p), jax.lax.stop_gradient(l2_normalize(z))
  return jnp.mean(2.0 - 2.0 * jnp.sum(p * z, axis=-1))


def dino_loss(
  student: jax.Array, teacher: jax.Array, center: jax.Array, student_temp: float, teacher_temp
) -> jax.Array:
  """DINO's cross-entropy between sharpened, centred teacher and student distributions.

  student: [Vs, B, K] logits of all views; teacher: [Vt, B, K] logits of the
  global views, which are the first Vt student views (pairs of the same view
  are skipped); center: [K]. Returns the mean over (teacher, student) pairs.
  """
  teacher_probs = jax.nn.softmax((jax.lax.stop_gradient(teacher) - center) / teacher_temp, axis=-1)
  student_logp = jax.nn.log_softmax(student.astype(jnp.float32) / student_temp, axis=-1)
  vt, vs = teacher.shape[0], student.shape[0]
  # cross[t, s] = mean over the batch of -sum_k p_t log q_s.
  cross = -jnp.einsum("tbk,sbk->ts", teacher_probs, student_logp) / teacher.shape[1]
  pairs = ~jnp.eye(vt, vs, dtype=bool)
  return jnp.sum(jnp.where(pairs, cross, 0.0)) / jnp.sum(pairs)


def update_center(center: jax.Array, teacher: jax.Array, momentum: float) -> jax.Array:
  """EMA of the teacher's mean logit over the global batch and its views. teacher: [Vt, B, K]."""
  mean = jnp.mean(jax.lax.stop_gradient(teacher).astype(jnp.float32), axis=(0, 1))
  return center * momentum + mean * (1.0 - momentum)


def embedding_stats(z: jax.Array) -> dict[str, jax.Array]:
  """Collapse watch on embeddings z [N, D].

  embed_std: mean over dimensions of the per-dimension std of the L2-normalised
  embeddings (about 1/sqrt(D) when spread out, 0 when collapsed).
  effective_rank: exp of the entropy of the normalised singular values of the
  centred embeddings (Roy & Vetterli), between 1 (collapsed to a line) and D.
  Computed from the D x D covariance, a reduction over the batch, so it needs no gather.
  """
  z = jax.lax.stop_gradient(l2_normalize(z))
  mean = z.mean(axis=0)
  std = jnp.sqrt(jnp.maximum(jnp.mean(jnp.square(z - mean), axis=0), 0.0))
  centred = z - mean
  cov = centred.T @ centred / z.shape[0]
  singular = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(cov), 0.0))
  p = singular / jnp.maximum(singular.sum(), 1e-12)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-12)), 0.0))
  return {"embed_std": std.mean(), "effective_rank": jnp.exp(entropy)}


_last_warning = [0.0]


def _warn_collapse(std, rank, dim):
  now = time.monotonic()
  if now - _last_warning[0] > 60.0:  # Once a minute at most: the step may run many times a second.
    _last_warning[0] = now
    log.warning(
      "embeddings are collapsing: per-dim std %.4g (< %.4g = 0.1/sqrt(%d)), effective rank %.3g",
      float(std),
      0.1 / float(dim) ** 0.5,
      int(dim),
      float(rank),
    )


def collapse_watch(z: jax.Array) -> dict[str, jax.Array]:
  """embedding_stats(z) as metrics, plus "collapsed" (0/1) and a logged warning when std < 0.1/sqrt(D)."""
  stats = embedding_stats(z)
  dim = z.shape[-1]
  collapsed = stats["embed_std"] < 0.1 / dim**0.5
  jax.lax.cond(
    collapsed,
    lambda: jax.debug.callback(_warn_collapse, stats["embed_std"], stats["effective_rank"], dim),
    lambda: None,
  )
  return dict(stats, collapsed=collapsed.astype(jnp.float32))
