"""Video captioning on frozen features: a small transformer decoder trained on the encoder's tokens writes a caption
for each test clip, scored against every reference caption of its video with BLEU-4, METEOR, ROUGE-L and CIDEr.

The usual protocol of captioning on top of a video encoder (MSR-VTT, MSVD, VATEX), kept small so that it measures
the features more than the decoder: the encoder stays frozen, and its tokens of each clip
(`<embedding>_tokens` [N, D], as the attentive probe reads them) are the memory of a `depth`-block pre-norm
transformer decoder, each block causal self-attention over the caption, cross-attention to the video tokens, and an
MLP. The video tokens are layer-normalised and projected to the decoder's `width` once per clip.

Training: teacher forcing, the cross-entropy of each next token, on the captions of the training split, tokenized
by `data.text` (its tokenizer and `max_len`: bos + tokens + eos, truncated keeping eos, as for the text towers);
positions after the first eos are padding and not scored. The training tokens are computed once and kept on the
devices (`max_cache_gb`), each device drawing its batches from its own rows, as the attentive probe's; every
time a clip is drawn one of its video's captions is drawn with it, so each video weighs the same whatever its
number of captions. AdamW, the learning rate decayed from `lr` to 0 on a cosine.

Test: greedy decoding from bos, at most `max_decode_len` tokens (bos included; 0: data.text.max_len, the longest
the decoder was trained on), stopping once every caption of the batch has its eos; the text before the eos,
decoded by the tokenizer. Greedy rather than beam search: deterministic, and what compares encoders; published
numbers with beam search are a little higher.

Scoring: pycocoevalcap, the COCO caption evaluation code captioning papers report, against every caption of each
test video (`pipeline.eval_dataset(captions=True)`: not truncated to max_len). Instead of its PTB tokenizer (Java),
hypotheses and references are lower-cased and split into words, runs of letters and digits with inner hyphens and
apostrophes kept ("three-sided", "don't"); punctuation is dropped. Videos without captions or that could not be
read are not scored. Metrics as pycocoevalcap returns them: "bleu4", "meteor", "rouge_l" in [0, 1], "cider"
(CIDEr-D: clipped n-gram counts, a length penalty, times 10; papers print it times 100, as the others). METEOR
runs Java (pycocoevalcap's jar, some 20 s to load its paraphrase table): without `java` on the PATH it is left
out and the log says so. Needs the `captioning` extra (pip install -e '.[captioning]').
"""

import functools
import logging
import re
import shutil
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry, sharding
from jvssl.data import tokenizers
from jvssl.errors import ConfigError
from jvssl.evaluate import attentive_probe, features as features_lib
from jvssl.models import layers
from jvssl.models.attention import dot_product_attention

log = logging.getLogger("jvssl")

_WORD = re.compile(r"\w+(?:['-]\w+)*")


class CrossAttention(nnx.Module):
  """Queries from the caption [B, L, W] attend to the video's keys and values [B, N, heads, head_dim]."""

  def __init__(self, width: int, num_heads: int, *, rngs: nnx.Rngs):
    if width % num_heads:
      raise ConfigError(f"captioning num_heads {num_heads} does not divide width {width}")
    head_dim = width // num_heads
    f32, zeros = jnp.float32, nnx.initializers.zeros
    self.q = layers.param(rngs, layers.xavier(0, (1, 2)), (width, num_heads, head_dim), ("embed", "heads", "kv"), f32)
    self.q_bias = layers.param(rngs, zeros, (num_heads, head_dim), ("heads", "kv"), f32)
    kv_init = layers.xavier(0, (1, 2, 3))
    self.kv = layers.param(rngs, kv_init, (width, 2, num_heads, head_dim), ("embed", None, "heads", "kv"), f32)
    self.v_bias = layers.param(rngs, zeros, (num_heads, head_dim), ("heads", "kv"), f32)  # A key bias is ignored.
    proj_init = layers.xavier((0, 1), 2)
    self.proj = layers.param(rngs, proj_init, (num_heads, head_dim, width), ("heads", "kv", "embed"), f32)
    self.proj_bias = layers.param(rngs, zeros, (width,), ("embed",), f32)

  def keys_values(self, memory: jax.Array) -> tuple[jax.Array, jax.Array]:
    """memory [B, N, W] -> keys, values [B, N, heads, head_dim]: once per clip, not once per decoded token."""
    k, v = jnp.einsum("bnd,dthk->tbnhk", memory, self.kv[...])
    return k, v + self.v_bias[...]

  def __call__(self, x: jax.Array, kv: tuple[jax.Array, jax.Array]) -> jax.Array:
    q = jnp.einsum("bld,dhk->blhk", x, self.q[...]) + self.q_bias[...]
    out = dot_product_attention(q, *kv)
    return jnp.einsum("blhk,hkd->bld", out, self.proj[...]) + self.proj_bias[...]


class DecoderBlock(nnx.Module):
  """Pre-norm: x + causal self-attention, x + cross-attention to the video, x + MLP."""

  def __init__(self, width: int, num_heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
    self.norm1 = layers.LayerNorm(width, rngs=rngs)
    self.attn = layers.Attention(width, num_heads, rngs=rngs)
    self.norm2 = layers.LayerNorm(width, rngs=rngs)
    self.cross = CrossAttention(width, num_heads, rngs=rngs)
    self.norm3 = layers.LayerNorm(width, rngs=rngs)
    self.mlp = layers.Mlp(width, mlp_dim, rngs=rngs)

  def __call__(self, x, kv, causal):
    x = x + self.attn(self.norm1(x), mask=causal)
    x = x + self.cross(self.norm2(x), kv)
    return x + self.mlp(self.norm3(x))


class CaptionDecoder(nnx.Module):
  """Video tokens [B, N, D] and caption ids [B, L] -> next-token logits [B, L, vocab] (`memory`, then call).

  cfg: the evaluator's config (width, depth, num_heads, mlp_ratio); max_len: the longest caption, bos and eos included.
  """

  def __init__(self, cfg, dim: int, vocab_size: int, max_len: int, *, rngs: nnx.Rngs):
    width, num_heads, mlp_dim = cfg.width, cfg.num_heads, int(cfg.width * cfg.mlp_ratio)
    normal = nnx.initializers.normal(0.02)
    self.video_norm = layers.LayerNorm(dim, rngs=rngs)
    self.video_in = layers.Dense(dim, width, axes=("embed", None), rngs=rngs)
    self.token_embed = layers.param(rngs, normal, (vocab_size, width), ("vocab", "embed"), jnp.float32)
    self.pos_embed = layers.param(rngs, normal, (max_len, width), (None, "embed"), jnp.float32)
    self.blocks = nnx.List([DecoderBlock(width, num_heads, mlp_dim, rngs=rngs) for _ in range(cfg.depth)])
    self.norm = layers.LayerNorm(width, rngs=rngs)
    self.head = layers.Dense(width, vocab_size, axes=("embed", "vocab"), rngs=rngs)

  def memory(self, video: jax.Array) -> list:
    """video tokens [B, N, D] -> each block's cross-attention keys and values."""
    m = self.video_in(self.video_norm(video))
    return [block.cross.keys_values(m) for block in self.blocks]

  def __call__(self, ids: jax.Array, memory: list) -> jax.Array:
    length = ids.shape[1]
    x = jnp.take(self.token_embed[...], ids, axis=0) + self.pos_embed[:length]
    causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
    for block, kv in zip(self.blocks, memory):
      x = block(x, kv, causal)
    return self.head(self.norm(x))


def through_first(ids: jax.Array, end_id: int) -> jax.Array:
  """bool [B, L]: the positions up to and including each row's first end_id (all, for a row without one)."""
  is_end = ids == end_id
  return jnp.cumsum(is_end, axis=1) - is_end == 0


class Captioner:
  """The decoder as pure functions of its parameters (a pure dict; the graph split once), with its optimizer.

  captions: int32 [num_examples, K, max_len], each training video's K captions (padded with empty ones) in split
  order; num_captions: int32 [num_examples], how many are real; key: what the captions are drawn with.
  """

  def __init__(self, cfg, dim: int, tokenizer, max_len: int, num_steps: int, captions, num_captions, mesh, key):
    self.make = lambda key: CaptionDecoder(cfg, dim, tokenizer.vocab_size, max_len, rngs=nnx.Rngs(params=key))
    self.graphdef = nnx.split(nnx.eval_shape(lambda: self.make(jax.random.key(0))), nnx.Param)[0]
    self.optimizer = optax.adamw(optax.cosine_decay_schedule(cfg.lr, max(num_steps, 1)), weight_decay=cfg.weight_decay)
    self.bos_id, self.eos_id, self.pad_id = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
    self.captions, self.num_captions = captions, num_captions
    self.key = key

    def init(key):
      params = nnx.to_pure_dict(nnx.state(self.make(key), nnx.Param))
      return params, self.optimizer.init(params)

    # Replicated, as the training step returns them, so that the step compiles once.
    self._init = jax.jit(init, out_shardings=sharding.replicated(mesh))

  def init(self, seed: int):
    """(params, opt_state) of a fresh decoder."""
    # XLA's RngBitGenerator: threefry's draws take seconds to compile on CPU.
    return self._init(jax.random.key(seed, impl="rbg"))

  def _model(self, params) -> CaptionDecoder:
    return nnx.merge(self.graphdef, params, copy=True)

  def loss(self, params, video, ids, weight) -> jax.Array:
    """Teacher forcing: video [B, N, D], ids int32 [B, L] (bos first), weight [B] -> mean cross-entropy of the
    next tokens through each caption's eos."""
    model = self._model(params)
    target = ids[:, 1:]
    ce = optax.softmax_cross_entropy_with_integer_labels(model(ids[:, :-1], model.memory(video)), target)
    scored = through_first(target, self.eos_id) * weight[:, None]
    return jnp.sum(ce * scored) / jnp.maximum(jnp.sum(scored), 1.0)

  def draw(self, positions, step) -> jax.Array:
    """One caption of each training video `positions` [B] (split order), at random for this step -> ids [B, L]."""
    u = jax.random.uniform(jax.random.fold_in(self.key, step), positions.shape)
    pick = jnp.floor(u * self.num_captions[positions]).astype(jnp.int32)
    return self.captions[positions, pick]

  def train_step(self, params, opt_state, video, positions, weight, step):
    """One AdamW step on video [B, N, D] of the training videos `positions` [B], each with one of its captions
    (`draw`) -> (params, opt_state, loss). `attentive_probe.DeviceRows`'s step contract."""
    loss, grads = jax.value_and_grad(self.loss)(params, video, self.draw(positions, step), weight)
    updates, opt_state = self.optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def greedy(self, params, video, *, length: int) -> jax.Array:
    """video [B, N, D] -> int32 [B, length]: bos, then the likeliest next token until eos (pad after it)."""
    memory = self._model(params).memory(video)
    b = video.shape[0]
    ids = jnp.full((b, length), self.pad_id, jnp.int32).at[:, 0].set(self.bos_id)

    def step(state):
      t, ids, done = state
      token = jnp.argmax(self._model(params)(ids, memory)[:, t], axis=-1).astype(jnp.int32)
      token = jnp.where(done, self.pad_id, token)
      return t + 1, ids.at[:, t + 1].set(token), done | (token == self.eos_id)

    # No key-value cache: each step runs the decoder over the whole (causally masked) row, cheap at these sizes.
    _, ids, _ = jax.lax.while_loop(lambda s: (s[0] < length - 1) & ~jnp.all(s[2]), step, (0, ids, jnp.zeros(b, bool)))
    return ids


def caption_table(tokenizer, captions: Sequence[Sequence[str]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Each video's captions -> (ids int32 [V, K, max_len], K the most any video has, empty ones padding; counts [V])."""
  counts = np.array([len(c) for c in captions], np.int32)
  texts = np.full((len(captions), max(int(counts.max(initial=0)), 1)), "", object)
  for i, video in enumerate(captions):
    texts[i, : len(video)] = video
  return tokenizers.encode_padded(tokenizer, texts, max_len), counts


@jax.jit
def _weights(mask, index, counts):
  """Rows to train on: real clips whose videos have captions -> float32 [R]."""
  return ((mask > 0) & (counts[jnp.minimum(index, counts.shape[0] - 1)] > 0)).astype(jnp.float32)


def fit(cfg, train: features_lib.Features, tokenizer, max_len: int, seed: int) -> tuple[Captioner, dict]:
  """Trains the decoder on train.x [R, N, D] (kept on the devices) and train.captions -> (captioner, params)."""
  table, counts = caption_table(tokenizer, train.captions, max_len)
  mesh = train.x.sharding.mesh
  table, counts = (jax.device_put(a, sharding.replicated(mesh)) for a in (table, counts))
  weight = _weights(train.mask, train.index, counts)
  num_fit = int(jnp.sum(weight))
  if num_fit == 0:
    raise features_lib.Unavailable(f"no clip of '{cfg.train_split}' has a caption to train on")
  steps_per_epoch = -(-num_fit // cfg.batch_size)
  num_steps = cfg.num_epochs * steps_per_epoch
  order_key, draw_key = jax.random.split(jax.random.key(seed))
  captioner = Captioner(cfg, train.x.shape[-1], tokenizer, max_len, num_steps, table, counts, mesh, draw_key)
  # The attentive probe's batching of rows kept on the devices; its "labels" here are the rows' split positions.
  cached = attentive_probe.DeviceRows(captioner, train.replace(label=train.index), cfg.batch_size)
  params, opt_state = captioner.init(seed)
  for step in range(num_steps):
    epoch, j = divmod(step, steps_per_epoch)
    if j == 0:
      order, count = cached.order(weight, jax.random.fold_in(order_key, epoch))
    params, opt_state, loss = cached.step(params, opt_state, weight, order, count, j, step)
    if j == steps_per_epoch - 1:
      log.info("captioning epoch %d/%d: loss %.4g", epoch + 1, cfg.num_epochs, float(loss))
  return captioner, params


def normalize(text: str) -> str:
  """Lower-cased words separated by single spaces, punctuation dropped (the module docstring's rule)."""
  return " ".join(_WORD.findall(text.lower()))


def _pycocoevalcap():
  """pycocoevalcap's (Bleu, Meteor, Rouge, Cider) scorer classes; ConfigError naming the extra if it is missing."""
  try:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
  except ImportError:
    raise ConfigError("the captioning evaluator needs pycocoevalcap: pip install -e '.[captioning]'") from None
  return Bleu, Meteor, Rouge, Cider


def caption_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
  """hypotheses: one caption per video; references: each video's captions (videos with none are not scored) ->
  {"bleu4", "meteor" (with Java), "rouge_l", "cider"}, pycocoevalcap's corpus scores after `normalize`."""
  Bleu, Meteor, Rouge, Cider = _pycocoevalcap()
  scored = [i for i, refs in enumerate(references) if refs]
  if not scored:
    raise features_lib.Unavailable("no test video has a caption to score against")
  if len(scored) < len(references):
    unscored = len(references) - len(scored)
    log.info("captioning: %d of %d videos have no caption or could not be read: not scored", unscored, len(references))
  gts = {i: [normalize(r) for r in references[i]] for i in scored}
  res = {i: [normalize(hypotheses[i])] for i in scored}
  metrics = {"bleu4": Bleu(4).compute_score(gts, res, verbose=0)[0][3]}
  if shutil.which("java"):
    metrics["meteor"] = Meteor().compute_score(gts, res)[0]
  else:
    log.info("captioning: METEOR skipped: it runs Java, and no `java` is on the PATH")
  metrics["rouge_l"] = Rouge().compute_score(gts, res)[0]
  metrics["cider"] = Cider().compute_score(gts, res)[0]
  return {name: float(value) for name, value in metrics.items()}


@registry.EVALUATORS.register("captioning")
class Captioning:
  @staticmethod
  def default_config() -> ConfigDict:
    return features_lib.evaluator_config(
      embedding="video",  # The decoder reads `<embedding>_tokens`.
      num_test=0,  # The first N clips of test_split (0: all).
      depth=2,
      width=128,
      num_heads=4,
      mlp_ratio=4.0,
      num_epochs=20,
      batch_size=64,  # Global.
      lr=1e-3,
      weight_decay=0.01,
      max_decode_len=0,  # Tokens decoded, bos included; 0: data.text.max_len.
      max_cache_gb=4.0,  # The training split's tokens are kept on the devices up to this much per device.
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    _pycocoevalcap()  # A missing extra fails before the encoder runs.
    rules = sharding.rules_from_config(config)
    ways = sharding.data_parallel_size(mesh, rules)
    if cfg.batch_size % ways:
      raise ConfigError(f"captioning batch_size {cfg.batch_size} does not split over {ways} data-parallel devices")
    max_len = config.data.text.max_len
    length = cfg.max_decode_len or max_len
    if not 2 <= length <= max_len:
      raise ConfigError(f"captioning max_decode_len {length} must be from 2 to data.text.max_len ({max_len})")
    tokenizer = tokenizers.build(config.data.text)
    encode = cache.function(cfg.embedding, "tokens")
    try:
      train = cache.sharded(cfg.train_split, cfg.embedding, "tokens", cfg.num_train, cfg.max_cache_gb, captions=True)
    except features_lib.TooLarge as e:
      raise ConfigError(f"captioning: {e} (max_cache_gb); lower num_train") from None
    start = time.time()
    captioner, params = fit(cfg, train, tokenizer, max_len, config.seed)
    log.info("captioning: decoder trained in %.0f s", time.time() - start)
    decode = jax.jit(functools.partial(captioner.greedy, length=length))
    test = features_lib.predict_split_sharded(
      config, mesh, lambda batch: decode(params, encode(batch)), cfg.test_split, cfg.num_test, captions=True
    )
    ids, _ = test.to_host()
    hypotheses = [tokenizer.decode(row) for row in ids]
    for i in range(min(3, len(hypotheses))):
      log.info("captioning example %d: %r (reference %r)", i, hypotheses[i], test.captions[i][:1])
    return caption_metrics(hypotheses, test.captions)
