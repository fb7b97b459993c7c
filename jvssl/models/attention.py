"""The one attention kernel every model calls, chosen by backend."""

import math

import einops
import jax
import jax.numpy as jnp

from jvssl import sharding

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "chunked", "pallas")
# Queries per chunk of the CPU path: VideoMAE's decoder sees 1568 tokens = 8 chunks of 196 (one frame pair).
QUERY_CHUNK = 196
# Splash attention tiles both sequences in multiples of a TPU vector register's 128 lanes: other lengths are padded.
PALLAS_BLOCK = 128
# Shorter sequences keep XLA's kernel on TPU: a head's [N, N] fp32 scores are at most 1 MB, so the flash kernel
# saves little memory, while padding to whole blocks costs up to a quarter more work per axis. Untuned: measure on TPU.
PALLAS_MIN_TOKENS = 512


def dot_product_attention(q, k, v, *, mask=None, implementation: str = "auto"):
  """Softmax attention. q: [B, N queries, H, Dh], k, v: [B, N keys, H, Dh] -> [B, N queries, H, Dh].

  mask: optional bool [B | 1, H | 1, N queries | 1, N keys]: True where a query may attend to a key.
  implementation: one of IMPLEMENTATIONS; "auto" asks `select_implementation` for this backend and these shapes.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, not {implementation!r}")
  if implementation == "auto":
    mask_shape = None if mask is None else mask.shape
    implementation = select_implementation(
      jax.default_backend(), q.dtype, q.shape, k.shape, mask_shape, partitioned=_sequence_partitioned()
    )
  if implementation == "chunked":
    return chunked_attention(q, k, v, mask)
  if implementation == "pallas":
    if mask is not None:
      raise ValueError("pallas attention takes no mask: use implementation 'xla' (or 'auto') for masked attention")
    return _per_device(pallas_attention)(q, k, v)
  if implementation == "cudnn" and mask is not None:
    # cuDNN takes the mask as a bias of every query and key: [B | 1, H | 1, N, N].
    mask = jnp.broadcast_to(mask, (*mask.shape[:2], q.shape[1], k.shape[1]))
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


def select_implementation(backend: str, dtype, q_shape, k_shape, mask_shape=None, partitioned: bool = False) -> str:
  """The kernel "auto" runs: backend as `jax.default_backend()` names it, dtype of q, shapes of q, k and the mask as
  `dot_product_attention` takes them (mask_shape None: no mask); partitioned: whether the current rules split the
  sequence over devices.

  The cuDNN fused kernel on GPU for bf16/fp16 (it supports no fp32); the query-chunked kernel on CPU for long
  sequences; splash attention on TPU for long unmasked sequences whose sequence is whole on each device (the kernel
  runs per device, over the batch and heads the device holds); XLA's otherwise.
  """
  if backend == "gpu" and dtype in (jnp.bfloat16, jnp.float16):
    return "cudnn"
  if backend == "cpu" and q_shape[1] > QUERY_CHUNK:
    return "chunked"
  long_enough = min(q_shape[1], k_shape[1]) >= PALLAS_MIN_TOKENS
  if backend == "tpu" and long_enough and mask_shape is None and not partitioned:
    return "pallas"
  return "xla"


def pallas_attention(q, k, v):
  """The same softmax attention (q, k, v as `dot_product_attention` takes them, no mask) with splash attention, the
  Pallas flash-attention kernel JAX ships for TPU.

  Both sequences are padded to whole blocks: padded keys are masked out, padded queries dropped. On a mesh of more
  than one device call it per device (`_per_device`): XLA does not partition a Pallas kernel.
  """
  from jax.experimental.pallas.ops.tpu import splash_attention as splash  # Only where it runs.

  (b, nq, heads, dh), nk = q.shape, k.shape[1]
  pad_q, pad_k = -nq % PALLAS_BLOCK, -nk % PALLAS_BLOCK

  # The batch's heads as one stack [B * H, N, Dh], as the kernel takes the heads of one sequence. (vmap over the
  # batch would do on TPU, but jax 0.10's TPU interpret mode, which the tests run it in on CPU, fails on a kernel
  # vmapped over more than one example.)
  def stack_heads(t, pad):
    return jnp.pad(einops.rearrange(t, "b n h d -> (b h) n d"), ((0, 0), (0, pad), (0, 0)))

  # The scale on q, as the kernel applies none.
  q, k, v = stack_heads(q * (1.0 / math.sqrt(dh)), pad_q), stack_heads(k, pad_k), stack_heads(v, pad_k)
  segment_ids = None
  if pad_k:
    # A query sees the keys of its segment: every query is in segment 1, the padded keys in segment 0.
    keys = (jnp.arange(nk + pad_k) < nk).astype(jnp.int32)
    segment_ids = splash.SegmentIds(q=jnp.ones(nq + pad_q, jnp.int32), kv=keys)
  bq, bk = _pallas_block(nq + pad_q), _pallas_block(nk + pad_k)
  block_sizes = splash.BlockSizes(
    block_q=bq,
    block_kv=bk,
    block_kv_compute=bk,
    block_q_dkv=bq,
    block_kv_dkv=bk,
    block_kv_dkv_compute=bk,
    block_q_dq=bq,
    block_kv_dq=bk,
  )
  full = splash.MultiHeadMask([splash.FullMask((nq + pad_q, nk + pad_k))] * (b * heads))
  kernel = splash.make_splash_mha(full, block_sizes=block_sizes, head_shards=1, q_seq_shards=1)
  return einops.rearrange(kernel(q, k, v, segment_ids)[:, :nq], "(b h) n d -> b n h d", b=b)


# Logical axes of q, k and v in layers.Attention (which constrains them so).
_QKV_AXES = ("batch", "act_seq", "act_heads", None)


def _qkv_spec():
  """PartitionSpec of q, k, v under the current mesh and rules; None without a mesh of more than one device."""
  rules = sharding.current_rules()
  if rules is None or jax.sharding.get_abstract_mesh().size <= 1:
    return None
  return sharding.logical_to_spec(_QKV_AXES, rules)


def _sequence_partitioned() -> bool:
  spec = _qkv_spec()
  return spec is not None and spec[1] is not None


def _per_device(kernel):
  """kernel(q, k, v) run on each device's batch and heads (shard_map), as a Pallas kernel must be; itself when one
  device runs everything."""
  spec = _qkv_spec()
  if spec is None:
    return kernel
  if spec[1] is not None:
    raise ValueError(f"pallas attention needs each device to hold whole sequences; the rules shard them: {spec}")
  return jax.shard_map(kernel, in_specs=(spec, spec, spec), out_specs=spec, check_vma=False)


def _pallas_block(n: int) -> int:
  """The largest of 512, 256 and 128 tokens dividing n (a multiple of 128): larger tiles amortise the kernel's
  per-step overhead (MaxText's default is 512)."""
  return next(block for block in (4 * PALLAS_BLOCK, 2 * PALLAS_BLOCK, PALLAS_BLOCK) if n % block == 0)


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
