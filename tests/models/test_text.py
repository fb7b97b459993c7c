"""The text transformer: shapes, padding invariance, causality, pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jvssl.models import text

VOCAB, PAD = 50, 0


def _config(**overrides):
  c = text.default_config()
  c.width, c.depth, c.num_heads, c.max_len = 32, 2, 2, 12
  c.update(overrides)
  return c


def _model(**overrides):
  return text.TextTransformer(_config(**overrides), vocab_size=VOCAB, pad_id=PAD, rngs=nnx.Rngs(0))


@nnx.jit
def _apply(model, ids):
  return model(ids)  # One compilation per model and length, cheaper than running each op eagerly.


def _ids(rows, length):
  """Right-padded int32 [B, length] of the given token lists."""
  return jnp.asarray([row + [PAD] * (length - len(row)) for row in rows], jnp.int32)


ROWS = [[5, 9, 13, 7, 44], [3, 2, 8]]


def test_shapes_and_mask():
  model = _model(projection_dim=16)
  out = _apply(model, _ids(ROWS, 8))
  assert out["tokens"].shape == (2, 8, 32) and out["pooled"].shape == (2, 16) and model.width == 16
  np.testing.assert_array_equal(out["mask"], _ids(ROWS, 8) != PAD)


@pytest.mark.parametrize("causal,pooling", [(True, "eot"), (True, "mean"), (False, "mean"), (False, "cls")])
def test_extra_padding_changes_nothing(causal, pooling):
  model = _model(causal=causal, pooling=pooling)
  short, long = _apply(model, _ids(ROWS, 6)), _apply(model, _ids(ROWS, 12))
  np.testing.assert_allclose(short["pooled"], long["pooled"], atol=1e-5)
  np.testing.assert_allclose(short["tokens"][0, :5], long["tokens"][0, :5], atol=1e-5)


def test_eot_reads_the_last_text_token():
  model = _model()
  out = _apply(model, _ids(ROWS, 8))
  assert model.width == 32
  np.testing.assert_allclose(out["pooled"], out["tokens"][jnp.arange(2), jnp.array([4, 2])], atol=1e-6)


@pytest.mark.parametrize("pad", [0, VOCAB - 1])
def test_argmax_pooling_reads_the_first_end_of_text_token(pad):
  """CLIP's tokenizers pad with 0 (also its "!", so 0 in the text is text) or with the end-of-text id."""
  eos = VOCAB - 1
  model = text.TextTransformer(_config(pooling="argmax"), vocab_size=VOCAB, pad_id=pad, rngs=nnx.Rngs(0))
  ids = jnp.asarray([[1, 0, 9, eos] + [pad] * 2, [1, 3, eos] + [pad] * 3], jnp.int32)
  out = _apply(model, ids)
  np.testing.assert_array_equal(out["mask"], [[True] * 4 + [False] * 2, [True] * 3 + [False] * 3])
  np.testing.assert_allclose(out["pooled"], out["tokens"][jnp.arange(2), jnp.array([3, 2])], atol=1e-6)
  np.testing.assert_allclose(out["pooled"], _apply(model, ids[:, :4])["pooled"], atol=1e-5)


def test_causal_outputs_ignore_later_tokens():
  model = _model()
  ids = _ids(ROWS, 8)
  changed = ids.at[0, 3].set(21)
  a, b = _apply(model, ids)["tokens"], _apply(model, changed)["tokens"]
  np.testing.assert_allclose(a[0, :3], b[0, :3], atol=1e-6)
  assert np.abs(np.asarray(a[0, 3:5] - b[0, 3:5])).max() > 1e-3
  np.testing.assert_array_equal(a[1], b[1])


def test_too_long_input_is_an_error():
  with pytest.raises(ValueError, match="max_len"):
    _model()(jnp.ones((1, 13), jnp.int32))


def test_gradients_flow_under_jit_with_drop_path():
  model = _model(drop_path_rate=0.1)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def loss(params, ids, rng):
    m = nnx.merge(graphdef, params, rest, copy=True)
    return jnp.square(m(ids, rng=rng, train=True)["pooled"]).mean()

  grads = jax.grad(loss)(params, _ids(ROWS, 8), jax.random.key(0))
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert np.abs(np.asarray(grads["token_embed"][...])).sum() > 0


def test_chunked_attention_kernel_masks_as_xla_does():
  ids = _ids(ROWS, 8)
  xla, chunked = (_apply(_model(attention_impl=impl), ids) for impl in ("xla", "chunked"))
  np.testing.assert_allclose(xla["tokens"], chunked["tokens"], atol=1e-5)
