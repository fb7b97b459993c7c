"""Every attention kernel computes the same values and gradients as XLA's, and "auto" picks the backend's."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from jvssl.models import attention

from conftest import run_python

xla_attention = functools.partial(jax.nn.dot_product_attention, implementation="xla")


def _normal(*shapes):
  """Standard normal float32 arrays of these shapes, from numpy: jax.random compiles once per shape, which would take
  most of these small tests' time."""
  rng = np.random.default_rng(0)
  return [rng.standard_normal(shape, np.float32) for shape in shapes]


def _assert_matches_xla(attend, q, k, v):
  """attend(q, k, v) equals XLA's kernel, forward and in the gradients w.r.t. q, k and v."""
  np.testing.assert_allclose(attend(q, k, v), xla_attention(q, k, v), rtol=2e-5, atol=2e-6)
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))
  grads = jax.grad(loss(attend), argnums=(0, 1, 2))(q, k, v)
  expected = jax.grad(loss(xla_attention), argnums=(0, 1, 2))(q, k, v)
  for g, e in zip(grads, expected):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [450])  # Two whole chunks of 196 and an uneven last one.
def test_chunked_matches_reference(n):
  q, k, v = _normal(*[(2, n, 2, 16)] * 3)
  _assert_matches_xla(attention.chunked_attention, q, k, v)


# Queries padded to one block of 256 and keys to three blocks of 128, the last part padding; then keys unpadded.
@pytest.mark.parametrize("nq, nk", [(200, 300), (100, 128)])
def test_pallas_matches_reference(nq, nk):
  q, k, v = _normal((2, nq, 2, 8), (2, nk, 2, 8), (2, nk, 2, 8))
  pallas = functools.partial(attention.dot_product_attention, implementation="pallas")
  with pltpu.force_tpu_interpret_mode():  # The TPU kernel, simulated on CPU.
    _assert_matches_xla(pallas, q, k, v)


def test_pallas_refuses_a_mask():
  q = jnp.ones((1, 128, 1, 8))
  with pytest.raises(ValueError, match="no mask"):
    attention.dot_product_attention(q, q, q, mask=jnp.ones((1, 1, 1, 128), bool), implementation="pallas")


def test_cudnn_gets_a_mask_for_every_query_and_key(monkeypatch):
  # No CPU runs cuDNN: XLA's kernel stands in for it, recording the mask it is given.
  masks = []

  def cudnn(q, k, v, *, mask, implementation):
    masks.append((implementation, mask.shape))
    return xla_attention(q, k, v, mask=mask)

  monkeypatch.setattr(jax.nn, "dot_product_attention", cudnn)
  q, k, v = _normal((2, 6, 3, 8), (2, 5, 3, 8), (2, 5, 3, 8))
  keys = (np.arange(5) < np.array([5, 3])[:, None])[:, None, None]  # [B, 1, 1, N keys]
  out = attention.dot_product_attention(q, k, v, mask=keys, implementation="cudnn")
  assert masks == [("cudnn", (2, 1, 6, 5))]
  np.testing.assert_allclose(out, xla_attention(q, k, v, mask=keys), rtol=1e-6)


@pytest.mark.parametrize(
  "backend, dtype, nq, nk, masked, partitioned, expected",
  [
    ("gpu", jnp.bfloat16, 1568, 1568, True, True, "cudnn"),
    ("gpu", jnp.float32, 1568, 1568, False, False, "xla"),  # cuDNN has no fp32 kernel.
    ("cpu", jnp.float32, 1568, 1568, True, False, "chunked"),
    ("cpu", jnp.float32, attention.QUERY_CHUNK, 1568, False, False, "xla"),
    ("tpu", jnp.bfloat16, 1568, 1568, False, False, "pallas"),
    ("tpu", jnp.float32, attention.PALLAS_MIN_TOKENS, 1568, False, False, "pallas"),
    ("tpu", jnp.bfloat16, 1568, 1568, True, False, "xla"),  # Splash attention takes no mask array.
    ("tpu", jnp.bfloat16, 1568, 1568, False, True, "xla"),  # The rules split the sequence over devices.
    ("tpu", jnp.bfloat16, 1, 1568, False, False, "xla"),  # Too few queries to tile.
    ("tpu", jnp.bfloat16, 256, 256, False, False, "xla"),
  ],
)
def test_select_implementation(backend, dtype, nq, nk, masked, partitioned, expected):
  q_shape, k_shape = (2, nq, 12, 64), (2, nk, 12, 64)
  mask_shape = (2, 1, 1, nk) if masked else None
  assert attention.select_implementation(backend, dtype, q_shape, k_shape, mask_shape, partitioned) == expected


def test_auto_picks_chunked_on_cpu_for_long_sequences(monkeypatch):
  calls = []
  original = attention.chunked_attention
  monkeypatch.setattr(attention, "chunked_attention", lambda *a: calls.append(a[0].shape) or original(*a))
  q = jnp.ones((1, attention.QUERY_CHUNK + 4, 1, 8))
  attention.dot_product_attention(q, q, q)
  short = jnp.ones((1, 16, 1, 8))
  attention.dot_product_attention(short, short, short)
  assert calls == [q.shape]  # Short sequences keep XLA's kernel.


def test_pallas_runs_per_device_on_a_mesh():
  # Batch over "data", heads over "model" (the "tp" rules): each of 4 devices runs the kernel on its own part. The
  # kernel is XLA's here, standing in for splash, whose TPU interpret mode does not run under a multi-device
  # shard_map on CPU (it hangs); what is tested is the partitioning around it.
  run_python(
    """
import jax, numpy as np
from ml_collections import ConfigDict
from jvssl import sharding
from jvssl.models import attention
seen = []
def stand_in(q, k, v):
  seen.append(q.shape)
  return jax.nn.dot_product_attention(q, k, v, implementation="xla")
attention.pallas_attention = stand_in
mesh = sharding.make_mesh(ConfigDict(dict(data=2, fsdp=1, model=2, dcn_data=1, dcn_fsdp=1, dcn_model=1)))
q, k, v = (np.random.default_rng(i).normal(size=(2, 130, 2, 8)).astype(np.float32) for i in range(3))
def attend(impl, rules):
  with sharding.use(mesh, rules):
    return jax.jit(lambda q, k, v: attention.dot_product_attention(q, k, v, implementation=impl))(q, k, v)
got = attend("pallas", sharding.RULE_SETS["tp"])
assert seen == [(1, 130, 1, 8)], seen
np.testing.assert_allclose(np.asarray(got), np.asarray(attend("xla", sharding.RULE_SETS["tp"])), atol=2e-5)
try:
  attend("pallas", sharding.RULE_SETS["dp"] + (("act_seq", "model"),))
  raise AssertionError("a split sequence was given to the kernel")
except ValueError as e:
  assert "whole sequences" in str(e), e
""",
    devices=4,
    timeout=120,
  )
