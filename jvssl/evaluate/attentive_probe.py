"""Attentive probe (V-JEPA, V-JEPA 2): a small transformer classifier trained on the frozen encoder's tokens.

The probe is V-JEPA's AttentiveClassifier (facebookresearch/vjepa2, src/models/attentive_pooler.py):
depth - 1 pre-norm self-attention blocks over the tokens, then a cross-attention block in which
one learned query attends to them (no output projection; a residual MLP on the query), then a
linear head. V-JEPA 2's probe evaluations (configs/eval/vitl/{k400,ssv2}.yaml and
evals/video_classification_frozen/eval.py) use 4 blocks and 16 heads, AdamW with a cosine
learning rate from lr to 0 and no warm-up, a constant weight decay, 20 epochs at a global batch
of 256, and train 20 probes at once, over 5 learning rates x 4 weight decays, reporting the best
on the validation split.

Here the probes are one `vmap` over stacked parameters: each batch of tokens is computed once by
the frozen encoder and read by all of them. The tokens of the training split are computed once
and kept on the devices, sharded over the batch axis (each device samples its batches' rows from
its own rows), or with `stream` recomputed every epoch from the training pipeline (with the run's
data.augment) for splits whose tokens do not fit. The setting is chosen on a held-out part of the
training split, or with `select_on="test"` on the test split as V-JEPA 2 does; the metrics name it.
"""

import functools
import itertools
import logging
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from jvssl import registry, sharding
from jvssl.data import pipeline
from jvssl.errors import ConfigError
from jvssl.evaluate import features as features_lib
from jvssl.methods.base import Inputs
from jvssl.models import layers

log = logging.getLogger("jvssl")


class AttentiveClassifier(nnx.Module):
  """tokens [B, N, D] -> logits [B, num_classes]; V-JEPA's AttentiveClassifier with its initialisation."""

  def __init__(
    self, dim: int, num_classes: int, *, depth: int, num_heads: int, mlp_ratio: float, init_std: float, rngs
  ):
    if depth < 1:
      raise ConfigError(f"attentive_probe depth counts the cross-attention block and must be >= 1, not {depth}")
    if dim % num_heads:
      raise ConfigError(f"attentive_probe num_heads {num_heads} does not divide the encoder's width {dim}")
    mlp = int(dim * mlp_ratio)
    heads, head_dim = num_heads, dim // num_heads
    kw = dict(norm_eps=1e-5, rngs=rngs)  # torch.nn.LayerNorm's eps.
    # V-JEPA's trunc_normal_(std=init_std) cuts at +-2 absolute, which for std 0.02 cuts nothing.
    normal = nnx.initializers.normal(init_std)
    zeros = nnx.initializers.zeros
    self.blocks = nnx.List([layers.Block(dim, heads, mlp, qkv_bias="all", **kw) for _ in range(depth - 1)])
    self.query = layers.param(rngs, normal, (dim,), ("embed",), jnp.float32)
    self.norm1 = layers.LayerNorm(dim, eps=1e-5, rngs=rngs)
    self.q = layers.param(rngs, normal, (dim, heads, head_dim), ("embed", "heads", "kv"), jnp.float32)
    self.q_bias = layers.param(rngs, zeros, (heads, head_dim), ("heads", "kv"), jnp.float32)
    # No key bias: it adds the same score to every token, which the softmax ignores.
    self.kv = layers.param(rngs, normal, (dim, 2, heads, head_dim), ("embed", None, "heads", "kv"), jnp.float32)
    self.v_bias = layers.param(rngs, zeros, (heads, head_dim), ("heads", "kv"), jnp.float32)
    self.norm2 = layers.LayerNorm(dim, eps=1e-5, rngs=rngs)
    self.mlp = layers.Mlp(dim, mlp, rngs=rngs)
    self.head = layers.Dense(dim, num_classes, axes=("embed", "classes"), kernel_init=normal, rngs=rngs)

    def init(var, scale: float = 1.0):
      var[...] = normal(rngs.params(), var.shape, var.dtype) * scale

    # V-JEPA's _init_weights and _rescale_blocks: every linear weight N(0, init_std), then each block's
    # output projections divided by sqrt(2 * its 1-based depth), the cross block's MLP by the last one's.
    for i, block in enumerate(self.blocks):
      init(block.attn.qkv)
      init(block.attn.proj, 1 / math.sqrt(2 * (i + 1)))
      init(block.mlp.fc1.kernel)
      init(block.mlp.fc2.kernel, 1 / math.sqrt(2 * (i + 1)))
    init(self.mlp.fc1.kernel)
    init(self.mlp.fc2.kernel, 1 / math.sqrt(2 * max(depth - 1, 1)))

  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = tokens
    for block in self.blocks:
      x = block(x)
    # One query: the key weights are applied to it, not to every token, and the value weights to the pooled
    # tokens, so the block costs O(N * D * heads) per clip, not O(N * D^2). norm1's scale and bias fold into those
    # weights too (its bias adds the same score to every token), so when the probes share the tokens (depth 1)
    # they share the normalised tokens as well, and no per-probe copy [P, B, N, D] is made.
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    x = (x - mean) * jax.lax.rsqrt(jnp.square(x - mean).mean(-1, keepdims=True) + self.norm1.eps)
    scale, bias = self.norm1.scale[...], self.norm1.bias[...]
    wk, wv = self.kv[:, 0], self.kv[:, 1]  # [D, heads, head_dim]
    q = jnp.einsum("d,dhk->hk", self.query[...], self.q[...]) + self.q_bias[...]
    scores = jnp.einsum("bnd,dh->bhn", x, jnp.einsum("d,dhk,hk->dh", scale, wk, q)) / math.sqrt(q.shape[-1])
    pooled = jnp.einsum("bhn,bnd->bhd", jax.nn.softmax(scores, axis=-1), x)
    values = jnp.einsum("bhd,dhk->bhk", pooled, scale[:, None, None] * wv) + jnp.einsum("d,dhk->hk", bias, wv)
    values = values + self.v_bias[...]
    y = self.query[...] + values.reshape(values.shape[0], 1, -1)  # [B, 1, D]: one query, as the MLP takes sequences.
    y = y + self.mlp(self.norm2(y))
    return self.head(y[:, 0])


def settings(cfg) -> list[tuple[float, float]]:
  """The sweep's (lr, weight_decay) pairs, weight decay major as in V-JEPA 2's configs."""
  return [(lr, wd) for wd in cfg.weight_decays for lr in cfg.lrs]


class Sweep:
  """The probes of every setting, trained at once: parameters stacked on a leading axis [P, ...], one vmap."""

  def __init__(self, cfg, dim: int, num_classes: int, num_steps: int):
    self.settings = settings(cfg)
    self.lr = jnp.asarray([lr for lr, _ in self.settings], jnp.float32)
    self.wd = jnp.asarray([wd for _, wd in self.settings], jnp.float32)
    self.num_steps = num_steps
    self.make = lambda key: AttentiveClassifier(
      dim,
      num_classes,
      depth=cfg.depth,
      num_heads=cfg.num_heads,
      mlp_ratio=cfg.mlp_ratio,
      init_std=cfg.init_std,
      rngs=nnx.Rngs(params=key),
    )
    self.graphdef = nnx.split(nnx.eval_shape(lambda: self.make(jax.random.key(0))), nnx.Param)[0]
    self.adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)  # torch.optim.AdamW's defaults.

  def init(self, seed: int):
    """(params, opt_state); probe i starts from key i of `seed`, whatever the other settings."""
    # XLA's RngBitGenerator: initialising 20 probes is all random draws, which threefry takes long to compile on CPU.
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed, impl="rbg"), jnp.arange(len(self.settings)))
    params = jax.jit(jax.vmap(lambda k: nnx.to_pure_dict(nnx.state(self.make(k), nnx.Param))))(keys)
    return params, self.adam.init(params)

  def logits(self, params, tokens: jax.Array) -> jax.Array:
    """tokens [B, N, D], shared by the probes -> logits [P, B, C]."""
    return jax.vmap(lambda p: nnx.merge(self.graphdef, p, copy=True)(tokens))(params)

  def train_step(self, params, opt_state, tokens, labels, weight, step):
    """One AdamW step of every probe on tokens [B, N, D], labels [B], weight [B] -> (params, opt_state, loss [P])."""

    def loss_fn(params):
      ce = optax.softmax_cross_entropy_with_integer_labels(self.logits(params, tokens), labels[None])
      losses = jnp.sum(weight * ce, axis=1) / jnp.maximum(jnp.sum(weight), 1.0)
      return losses.sum(), losses  # The probes are independent: the sum's gradient is each one's own.

    grads, losses = jax.grad(loss_fn, has_aux=True)(params)
    direction, opt_state = self.adam.update(grads, opt_state)
    # V-JEPA 2 steps its scheduler before each update, so update s uses the rate of step s + 1.
    decay = 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(step + 1, self.num_steps) / self.num_steps))
    per_probe = lambda v, leaf: v.reshape((-1,) + (1,) * (leaf.ndim - 1))
    # AdamW as torch's: p - lr * (adam direction + wd * p), lr decayed, wd constant.
    params = jax.tree.map(
      lambda p, d: p - per_probe(self.lr * decay, p) * (d + per_probe(self.wd, p) * p), params, direction
    )
    return params, opt_state, losses

  def correct(self, params, tokens, labels, weight) -> jax.Array:
    """Weighted count of the clips each probe labels right [P]."""
    return jnp.sum(weight * (self.logits(params, tokens).argmax(-1) == labels), axis=1)


def _rows_index(rows):
  """This device's position along the mesh axes the rows are sharded over (inside shard_map)."""
  return jax.lax.axis_index(rows) if rows is not None else 0


def _local_order(weight, key, *, rows):
  """Inside shard_map: this device's rows with weight > 0 first, in a random order -> (order [r], their count [1])."""
  u = jax.random.uniform(jax.random.fold_in(key, _rows_index(rows)), weight.shape)
  return jnp.argsort(jnp.where(weight > 0, u, 2.0)), jnp.sum(weight > 0, keepdims=True)


def _local_batch(x, label, weight, order, count, j, *, size: int, wrap: bool):
  """Inside shard_map: this device's `size` rows of batch j, from positions j * size, ... of `order`.

  wrap: cycle through the first `count` entries (training: every row of the batch is a training
  row); otherwise positions past `count` weigh 0 (evaluation: each row once).
  """
  position = j * size + jnp.arange(size)
  if wrap:
    idx = order[position % jnp.maximum(count[0], 1)]
    return x[idx], label[idx], weight[idx]
  idx = order[jnp.minimum(position, order.shape[0] - 1)]
  return x[idx], label[idx], jnp.where(position < count[0], weight[idx], 0.0)


class DeviceRows:
  """Trains and evaluates a sweep on tokens kept on the devices: each device takes its rows of every batch from its
  own rows, so tokens never cross devices (as each worker of a data-parallel loader reads its own part).

  Any learner with the sweep's `train_step(params, opt_state, tokens, labels, weight, step) -> (params, opt_state,
  loss)` trains through `step` (the captioning evaluator's decoder does, its "labels" the rows' split positions).
  """

  def __init__(self, sweep: Sweep, train: features_lib.Features, batch_size: int):
    mesh, rows = train.x.sharding.mesh, train.x.sharding.spec[0]
    shards = math.prod(mesh.shape[a] for a in ((rows,) if isinstance(rows, str) else rows or ()))
    self.local_size, self.local_rows = batch_size // shards, train.x.shape[0] // shards
    spec = P(rows)
    self.order = jax.jit(
      jax.shard_map(functools.partial(_local_order, rows=rows), mesh=mesh, in_specs=(spec, P()), out_specs=spec)
    )
    batch = lambda wrap: jax.shard_map(
      functools.partial(_local_batch, size=self.local_size, wrap=wrap),
      mesh=mesh,
      in_specs=(spec,) * 5 + (P(),),
      out_specs=spec,
    )
    train_batch, eval_batch = batch(True), batch(False)

    def step(params, opt_state, weight, order, count, j, step):
      tokens, labels, w = train_batch(train.x, train.label, weight, order, count, j)
      return sweep.train_step(params, opt_state, tokens, labels, w, step)

    def correct(params, weight, order, count, j):
      return sweep.correct(params, *eval_batch(train.x, train.label, weight, order, count, j))

    self.step = jax.jit(step, donate_argnums=(0, 1))
    self.correct = jax.jit(correct)

  def fit(self, params, opt_state, weight, key, num_epochs: int, steps_per_epoch: int):
    """Trains on the rows with weight > 0 -> params. Each epoch, each device's rows in a new random order, cycled
    to fill its part of steps_per_epoch batches."""
    step = 0
    for epoch in range(num_epochs):
      order, count = self.order(weight, jax.random.fold_in(key, epoch))
      for j in range(steps_per_epoch):
        params, opt_state, losses = self.step(params, opt_state, weight, order, count, j, step)
        step += 1
      log.info("attentive_probe epoch %d/%d: lowest loss %.4g", epoch + 1, num_epochs, float(losses.min()))
    return params

  def accuracy(self, params, weight, total: int) -> np.ndarray:
    """Each probe's accuracy [P] on the cached rows with weight > 0 (`total` of them)."""
    order, count = self.order(weight, jax.random.key(0))
    steps = -(-self.local_rows // self.local_size)
    return sum(np.asarray(self.correct(params, weight, order, count, j), np.float64) for j in range(steps)) / total


@jax.jit
def _split(mask, held):
  """mask, held [R] -> (training weights, held-out weights, their sums)."""
  fit, held = (mask > 0) & ~held, (mask > 0) & held
  return fit.astype(jnp.float32), held.astype(jnp.float32), jnp.sum(fit), jnp.sum(held)


def fit_on_features(cfg, train: features_lib.Features, num_classes: int, seed: int):
  """Trains the sweep on tokens train.x [R, N, D] kept on the devices -> (sweep, params, each probe's accuracy [P]
  on the held-out clips, or None with select_on="test")."""
  holdout = cfg.select_on == "holdout"
  held = features_lib.holdout(train, cfg.holdout_fraction if holdout else 0.0, seed)
  weight, held, num_fit, num_held = _split(train.mask, held)
  num_fit, num_held = int(num_fit), int(num_held)
  if num_fit == 0 or (holdout and num_held == 0):
    raise ConfigError(
      f"attentive_probe: {num_fit} training and {num_held} held-out clips of '{cfg.train_split}' (num_train="
      f"{cfg.num_train}, holdout_fraction={cfg.holdout_fraction}): it needs some of each"
    )
  steps_per_epoch = -(-num_fit // cfg.batch_size)
  sweep = Sweep(cfg, train.x.shape[-1], num_classes, cfg.num_epochs * steps_per_epoch)
  cached = DeviceRows(sweep, train, cfg.batch_size)
  params = cached.fit(*sweep.init(seed), weight, jax.random.key(seed), cfg.num_epochs, steps_per_epoch)
  return sweep, params, cached.accuracy(params, held, num_held) if holdout else None


def _fit_streaming(config, cfg, encode, mesh, rules, num_classes: int):
  """Trains the sweep on batches of the training pipeline, the frozen encoder run on each -> (params, sweep)."""
  data_config = config.copy_and_resolve_references()
  data = data_config.data
  data.train_split, data.train_subset, data.batch_size, data.clips_per_video = (
    cfg.train_split,
    cfg.num_train,
    cfg.batch_size,
    1,
  )
  steps_per_epoch = -(-pipeline.num_train_examples(data) // cfg.batch_size)
  num_steps = cfg.num_epochs * steps_per_epoch
  ds = pipeline.train_dataset(data_config, inputs=Inputs(modalities=("video", "label")))
  batches = pipeline.device_iterator(ds, mesh, rules, data.prefetch_batches)
  first = next(batches)
  # Outside sharding.use: under a mesh, nnx reads the probe's logical axis names as mesh axes.
  sweep = Sweep(cfg, jax.eval_shape(encode, first).shape[-1], num_classes, num_steps)
  params, opt_state = sweep.init(config.seed)
  # Every clip weighs 1: the pipeline stands another video in for one it cannot read, as in pretraining.
  train_step = jax.jit(
    lambda params, opt_state, tokens, labels, step: sweep.train_step(
      params, opt_state, tokens, labels, jnp.ones(labels.shape), step
    ),
    donate_argnums=(0, 1),
  )
  with sharding.use(mesh, rules):
    for step, batch in zip(range(num_steps), itertools.chain([first], batches)):
      params, opt_state, losses = train_step(params, opt_state, encode(batch), batch["label"], step)
      if (step + 1) % steps_per_epoch == 0:
        epoch = (step + 1) // steps_per_epoch
        log.info("attentive_probe epoch %d/%d: lowest loss %.4g", epoch, cfg.num_epochs, float(losses.min()))
  return params, sweep


def _stream_accuracy(config, sweep: Sweep, params, encode, mesh, rules, split: str) -> np.ndarray:
  """Each probe's accuracy [P] on every clip of `split`, the encoder run batch by batch (nothing kept)."""
  data_config = features_lib.eval_data_config(config)
  ds, _ = pipeline.eval_dataset(data_config, split, config.eval.batch_size)
  correct_fn = jax.jit(
    lambda params, tokens, labels, mask: (sweep.correct(params, tokens, labels, mask > 0), jnp.sum(mask > 0))
  )
  correct, total = 0.0, 0
  with sharding.use(mesh, rules):
    for local in pipeline.numpy_batches(ds):
      batch = pipeline.to_global(local, mesh, rules)
      batch_correct, batch_total = correct_fn(params, encode(batch), batch["label"], batch["mask"])
      correct, total = correct + np.asarray(batch_correct, np.float64), total + int(batch_total)
  return correct / total


@registry.EVALUATORS.register("attentive_probe")
class AttentiveProbe:
  @staticmethod
  def default_config() -> ConfigDict:
    return features_lib.evaluator_config(
      embedding="video",
      # V-JEPA 2's probe (configs/eval/vitl/k400.yaml): 4 blocks in all (3 self-attention, 1 cross-attention).
      depth=4,
      num_heads=16,
      mlp_ratio=4.0,
      init_std=0.02,
      # The sweep: every (lr, weight decay) pair, as V-JEPA 2's 20 multihead_kwargs.
      lrs=(5e-3, 3e-3, 1e-3, 3e-4, 1e-4),
      weight_decays=(0.01, 0.1, 0.4, 0.8),
      num_epochs=20,
      batch_size=256,  # Global; V-JEPA 2: 4 clips on each of 64 GPUs.
      # "holdout": choose the setting on a random `holdout_fraction` of the training clips (not trained on);
      # "test": on the test split, as V-JEPA 2 reports the best probe on its validation split.
      select_on="holdout",
      holdout_fraction=0.2,
      # False: the training tokens are computed once and kept on the devices (sharded over the batch axis),
      # up to max_cache_gb per device. True: every epoch runs the encoder on the training pipeline (with
      # data.augment), as V-JEPA 2 does; needs select_on="test".
      stream=False,
      max_cache_gb=4.0,
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    if cfg.select_on not in ("holdout", "test"):
      raise ConfigError(f"attentive_probe select_on must be 'holdout' or 'test', not '{cfg.select_on}'")
    if cfg.stream and cfg.select_on != "test":
      raise ConfigError("attentive_probe with stream=True cannot hold out training clips: set select_on='test'")
    rules = sharding.rules_from_config(config)
    ways = sharding.data_parallel_size(mesh, rules)
    if cfg.batch_size % ways:
      raise ConfigError(f"attentive_probe batch_size {cfg.batch_size} does not split over {ways} data-parallel devices")
    encode = cache.function(cfg.embedding, "tokens")
    num_classes = pipeline.make_source(config.data, cfg.train_split).num_classes
    start = time.time()
    if cfg.stream:
      params, sweep = _fit_streaming(config, cfg, encode, mesh, rules, num_classes)
      selection = None
    else:
      try:
        train = cache.sharded(cfg.train_split, cfg.embedding, "tokens", cfg.num_train, cfg.max_cache_gb)
      except features_lib.TooLarge as e:
        raise ConfigError(
          f"attentive_probe: {e} (max_cache_gb); set stream=True (the encoder then runs every epoch) or lower num_train"
        ) from None
      sweep, params, selection = fit_on_features(cfg, train, num_classes, config.seed)
    log.info("attentive_probe: %d probes trained in %.0f s", len(sweep.settings), time.time() - start)
    test = _stream_accuracy(config, sweep, params, encode, mesh, rules, cfg.test_split)
    return choose(sweep.settings, test, selection)


def choose(settings: list[tuple[float, float]], test: np.ndarray, held_out: np.ndarray | None) -> dict:
  """The metrics of the setting with the best held-out accuracy (test accuracy without held-out clips); logs all.

  test, held_out: each setting's accuracy [P].
  """
  best = int(np.argmax(test if held_out is None else held_out))
  for i, (lr, wd) in enumerate(settings):
    held = "" if held_out is None else f"held-out {held_out[i]:.4f}, "
    log.info("attentive_probe lr %g wd %g: %stest %.4f%s", lr, wd, held, test[i], "  <- chosen" * (i == best))
  lr, wd = settings[best]
  metrics = {"accuracy": float(test[best]), "lr": lr, "weight_decay": wd}
  if held_out is not None:
    metrics["holdout_accuracy"] = float(held_out[best])
  return metrics
