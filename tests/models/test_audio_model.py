import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl.models import layers
from jvssl.models.audio import AudioTransformer

# jvssl.data.audio.spectrogram_shape of the default data.audio (2.56 s at a 10 ms step, 64 mel bins); the data
# tests check it, and leaving TensorFlow out keeps this file quick.
SPECTROGRAM = (256, 64)


def tiny_config(**overrides):
  c = AudioTransformer.default_config()
  c.width, c.depth, c.num_heads, c.mlp_ratio = 32, 2, 2, 2
  c.update(overrides)
  return c


def forward(model, spec, rng=None, train=None):
  """model(spec) the pure way: split once, merge inside the jitted function."""
  graphdef, state = nnx.split(model)
  return _forward(graphdef, state, spec, rng, train)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _forward(graphdef, state, spec, rng, train):
  return nnx.merge(graphdef, state, copy=True)(spec, rng=rng, train=train)


def test_shapes_under_jit():
  model = AudioTransformer(tiny_config(), num_frames=SPECTROGRAM[0], num_mel_bins=SPECTROGRAM[1], rngs=nnx.Rngs(0))
  assert model.grid == (16, 4) and model.width == 32
  spec = jax.random.normal(jax.random.key(0), (2, *SPECTROGRAM))
  out = forward(model, spec)
  assert out["tokens"].shape == (2, 64, 32) and out["pooled"].shape == (2, 32)
  assert np.isfinite(out["tokens"]).all()
  np.testing.assert_allclose(out["pooled"], out["tokens"].mean(axis=1), atol=1e-6)


def test_tokens_are_time_then_frequency_patches():
  model = AudioTransformer(tiny_config(), num_frames=32, num_mel_bins=48, rngs=nnx.Rngs(0))
  assert model.grid == (2, 3)
  spec = jax.random.normal(jax.random.key(0), (1, 32, 48))
  tokens = model.embed(spec) - model.pos_embed[...]
  patch = spec[:, 16:32, 16:32].reshape(1, -1)  # Time row 1, frequency column 1: token 1 * 3 + 1.
  expected = patch @ model.patch_embed.kernel[...] + model.patch_embed.bias[...]
  np.testing.assert_allclose(tokens[:, 4], expected, atol=1e-5)
  # The fixed table: the first half of the channels is the time row's, the second the frequency column's.
  table = np.asarray(model.pos_embed[...])
  np.testing.assert_allclose(table[4, :16], layers.sincos_table(2, 16)[1], atol=1e-6)
  np.testing.assert_allclose(table[4, 16:], layers.sincos_table(3, 16)[1], atol=1e-6)


def test_cls_pooling_learned_positions_and_stochastic_depth():
  c = tiny_config(pool="cls", pos_embed="learned", drop_path_rate=0.5)
  model = AudioTransformer(c, num_frames=16, num_mel_bins=32, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
  spec = jax.random.normal(jax.random.key(0), (3, 16, 32))
  out = forward(model, spec)
  assert out["tokens"].shape == (3, 2, 32) and out["pooled"].shape == (3, 32)
  assert out["tokens"].dtype == jnp.bfloat16
  evaluated = forward(model, spec, jax.random.key(1), train=False)
  np.testing.assert_array_equal(evaluated["pooled"], out["pooled"])
  trained = [forward(model, spec, jax.random.key(k))["pooled"] for k in range(4)]
  assert any(not np.array_equal(t, out["pooled"]) for t in trained)


def test_bad_settings_say_what_to_change():
  with pytest.raises(ValueError, match="not divisible by patch 16x16"):
    AudioTransformer(tiny_config(), num_frames=200, num_mel_bins=64, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="pool must be"):
    AudioTransformer(tiny_config(pool="max"), num_frames=16, num_mel_bins=16, rngs=nnx.Rngs(0))
