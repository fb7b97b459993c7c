"""The one attention kernel every model calls, chosen by backend."""

import math

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "chunked")
# Queries per chunk of the CPU path: VideoMAE's decoder sees 1568 tokens = 8 chunks of 196 (one frame pair).
QUERY_CHUNK = 196


def dot_product_attention(q, k, v, *, mask=None, implementation: str = "auto"):
  """Softmax attention. q, k, v: [B, N, H, Dh] -> [B, N, H, Dh].

  mask: optional bool [B | 1, H | 1, N queries | 1, N keys]: True where a query may attend to a key.

  "auto" takes the cuDNN fused kernel on GPU for bf16/fp16 inputs (it supports
  no fp32), the query-chunked kernel on CPU for long sequences, and XLA's
  otherwise (TPU, short sequences).
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, not {implementation!r}")
  if implementation == "auto":
    backend = jax.default_backend()
    if backend == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16):
      implementation = "cudnn"
    elif backend == "cpu" and q.shape[1] > QUERY_CHUNK:
      implementation = "chunked"
    else:
      implementation = "xla"
  if implementation == "chunked":
    return chunked_attention(q, k, v, mask)
  if implementation == "cudnn" and mask is not None:
    # cuDNN takes the mask as a bias of every query and key: [B | 1, H | 1, N, N].
    mask = jnp.broadcast_to(mask, (*mask.shape[:2], q.shape[1], k.shape[1]))
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


def chunked_attention(q, k, v, mask=None, chunk: int = QUERY_CHUNK):
  """The same softmax attention (mask as `dot_product_attention` takes it), one block of `chunk` queries at a
  time, each under jax.checkpoint.

  On CPU the whole [B, H, N, N] score matrix of a long sequence (1568 tokens:
  ~120 MB per layer at batch 2) lives in main memory between forward and
  backward; a chunk's scores fit in cache, and the backward pass recomputes them
  instead of reading them back, which is faster than the fused XLA kernel there.
  """
  n = q.shape[1]
  # Heads-major once for all chunks (XLA otherwise transposes per chunk), and the scale on q, not on the scores.
  q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q * (1.0 / math.sqrt(q.shape[-1])), k, v))

  @jax.checkpoint
  def block(qc, k, v, mc):
    scores = jnp.einsum("bhqd,bhkd->bhqk", qc, k, preferred_element_type=jnp.float32)
    if mc is not None:
      scores = jnp.where(mc, scores, jnp.finfo(scores.dtype).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", probs, v)

  def mask_rows(i):  # The chunk's query rows of the mask (a mask without a query axis serves every chunk).
    if mask is None:
      return None
    return mask if mask.shape[-2] == 1 else mask[..., i : i + chunk, :]

  chunks = [block(q[:, :, i : i + chunk], k, v, mask_rows(i)) for i in range(0, n, chunk)]
  return jnp.swapaxes(jnp.concatenate(chunks, axis=2), 1, 2)
