"""The CPU attention path computes the same values and gradients as the reference kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvssl.models import attention


@pytest.mark.parametrize("n", [450])  # Two whole chunks of 196 and an uneven last one.
def test_chunked_matches_reference(n):
  q, k, v = jax.random.normal(jax.random.key(0), (3, 2, n, 2, 16))
  reference = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla")
  np.testing.assert_allclose(attention.chunked_attention(q, k, v), reference(q, k, v), rtol=2e-5, atol=2e-6)
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))
  grads = jax.grad(loss(attention.chunked_attention), argnums=(0, 1, 2))(q, k, v)
  expected = jax.grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
  for g, e in zip(grads, expected):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_auto_picks_chunked_on_cpu_for_long_sequences(monkeypatch):
  calls = []
  original = attention.chunked_attention
  monkeypatch.setattr(attention, "chunked_attention", lambda *a: calls.append(a[0].shape) or original(*a))
  q = jnp.ones((1, attention.QUERY_CHUNK + 4, 1, 8))
  attention.dot_product_attention(q, q, q)
  short = jnp.ones((1, 16, 1, 8))
  attention.dot_product_attention(short, short, short)
  assert calls == [q.shape]  # Short sequences keep XLA's kernel.
