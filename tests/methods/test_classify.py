"""The classify method's fine-tuning parts: mixup / CutMix (one mix for every frame of a clip) and the weight EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jvssl import config as config_lib
from jvssl.methods.base import RunLength
from jvssl.methods.classify import Classify, mix_clips

B, T, S, K = 6, 4, 16, 5


def _batch(seed=0):
  """video [B, T, S, S, 3], targets [B, K] one-hot smoothed by 0.1, as numpy."""
  rng = np.random.default_rng(seed)
  video = rng.normal(size=(B, T, S, S, 3)).astype(np.float32)
  return video, np.eye(K, dtype=np.float32)[rng.permutation(B) % K] * 0.9 + 0.1 / K


_mix_jit = jax.jit(mix_clips, static_argnames=("mixup_alpha", "cutmix_alpha", "mode"))


def _mix(seed, **kw):
  fields = dict(mixup_alpha=0.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, mode="elem") | kw
  return jax.tree.map(np.asarray, _mix_jit(jax.random.key(seed), *_batch(), **fields))


def _lams(targets, original):
  """The lam of each clip, read back from its mixed targets (label of the clip vs of its mirror)."""
  targets, original = np.asarray(targets), np.asarray(original)
  top, partner = original.argmax(-1), original[::-1].argmax(-1)
  lam = []
  for i in range(B):
    if top[i] == partner[i]:
      lam.append(np.nan)  # The clip's mirror has its class: lam does not show in the targets.
    else:
      on, off = original[i, top[i]], original[i, partner[i]]
      lam.append((targets[i, top[i]] - off) / (on - off))
  return np.array(lam)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cutmix_pastes_one_box_in_every_frame_and_mixes_targets_by_its_area(seed):
  video, targets = _batch()
  mixed, mixed_targets = _mix(seed, cutmix_alpha=1.0)
  np.testing.assert_allclose(mixed_targets.sum(-1), 1.0, atol=1e-6)
  pasted = np.all(mixed == video[::-1], axis=-1) & np.any(mixed != video, axis=-1)
  assert (pasted == pasted[:, :1]).all()  # [B, T, H, W]: the same box in every frame of a clip.
  lam = _lams(mixed_targets, targets)
  area = pasted[:, 0].mean(axis=(1, 2))
  known = ~np.isnan(lam)
  np.testing.assert_allclose(1.0 - lam[known], area[known], atol=1e-5)
  assert len({round(a, 4) for a in area}) > 1  # "elem": a box per clip.
  for i in range(B):  # The box is a rectangle.
    ys, xs = np.nonzero(pasted[i, 0])
    if len(ys):
      assert pasted[i, 0, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()


def test_mixup_blends_whole_clips_with_one_lam_per_batch():
  video, targets = _batch()
  mixed, mixed_targets = _mix(3, mixup_alpha=0.8, mode="batch")
  flipped = video[::-1]
  lam = _lams(mixed_targets, targets)
  lam = lam[~np.isnan(lam)]
  np.testing.assert_allclose(lam, lam[0], atol=1e-5)
  np.testing.assert_allclose(mixed, lam[0] * video + (1 - lam[0]) * flipped, atol=1e-5)
  np.testing.assert_allclose(mixed_targets.sum(-1), 1.0, atol=1e-6)


def test_switch_prob_and_prob():
  video, targets = _batch()
  # prob 0: nothing mixes.
  mixed, mixed_targets = _mix(0, mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.0)
  np.testing.assert_array_equal(mixed, video)
  np.testing.assert_array_equal(mixed_targets, targets)
  # Both alphas, per clip: CutMix clips only copy pixels (of the clip or its mirror), mixup clips blend them.
  copied = []
  for seed in range(3):
    mixed, _ = _mix(seed, mixup_alpha=0.8, cutmix_alpha=1.0)
    copied += np.all((mixed == video) | (mixed == video[::-1]), axis=(1, 2, 3, 4)).tolist()
  assert set(copied) == {True, False}


def _classifier(ema_decay):
  c = config_lib.base_config(model="vit", method="classify")
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 16, 1, 2, 32
  c.model.patch_size = (2, 8, 8)
  c.data.num_frames, c.data.image_size = 2, 16
  c.method.num_classes, c.method.ema_decay = 3, ema_decay
  c.method.head_init_scale = 50.0  # Logits of order 1, so the EMA weights visibly change them.
  method = Classify(c, RunLength(10, 1.0))
  # Random values into the abstract module: building it eagerly compiles every initialiser (seconds of CPU).
  graphdef, state = nnx.split(nnx.eval_shape(lambda: method.build(nnx.Rngs(0))))
  rng = np.random.default_rng(0)
  values = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), nnx.to_pure_dict(state))
  nnx.replace_by_pure_dict(state, values)
  return method, nnx.merge(graphdef, state)


def test_weight_ema_starts_at_the_weights_then_averages_and_serves_logits():
  method, model = _classifier(0.75)
  _, params, rest = nnx.split(model, nnx.Param, ...)
  assert "ema" in nnx.to_pure_dict(rest) and "ema" not in nnx.to_pure_dict(params)  # Never optimised.
  kernel = lambda m: np.asarray(m.encoder.blocks[0].mlp.fc1.kernel[...])
  fc1 = model.encoder.blocks[0].mlp.fc1.kernel
  fc1[...] += jax.random.normal(jax.random.key(1), fc1.shape)  # As if imported weights replaced the initialisation.
  method.update(model, jnp.asarray(0))
  np.testing.assert_array_equal(kernel(model.ema), kernel(model))
  before = kernel(model)
  fc1[...] += jax.random.normal(jax.random.key(2), fc1.shape)
  method.update(model, jnp.asarray(1))
  np.testing.assert_allclose(kernel(model.ema), 0.75 * before + 0.25 * kernel(model), atol=1e-6)
  video = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 16, 16, 3)), jnp.float32)
  logits = method.predict_fns()["logits"](model, {"video": video})
  np.testing.assert_allclose(logits, model.ema_logits(video), atol=1e-6)
  assert float(jnp.abs(logits - model(video)).max()) > 1e-4


def test_defaults_have_no_ema_and_no_mixing():
  method, model = _classifier(0.0)
  assert model.ema is None
  video = jnp.zeros((2, 2, 16, 16, 3))
  loss, _ = method.loss(model, {"video": video, "label": jnp.array([0, 1])}, jax.random.key(0), jnp.asarray(0))
  targets = optax.smooth_labels(jax.nn.one_hot(jnp.array([0, 1]), 3), 0.1)
  expected = optax.softmax_cross_entropy(model(video, jax.random.key(0)), targets).mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
