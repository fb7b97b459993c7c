"""The one attention kernel every model calls, chosen by backend."""

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "xla", "cudnn")


def dot_product_attention(q, k, v, *, implementation: str = "auto"):
  """Softmax attention. q, k, v: [B, N, H, Dh] -> [B, N, H, Dh].

  "auto" takes the cuDNN fused kernel on GPU for bf16/fp16 inputs (it supports
  no fp32) and XLA's otherwise.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, not {implementation!r}")
  if implementation == "auto":
    on_gpu = jax.default_backend() == "gpu"
    implementation = "cudnn" if on_gpu and q.dtype in (jnp.bfloat16, jnp.float16) else "xla"
  return jax.nn.dot_product_attention(q, k, v, implementation=implementation)
