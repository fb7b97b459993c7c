"""A method's named functions (`Method.predict_fns`) applied to whole splits, and the per-round cache of them.

A split's outputs stay where they were computed (`Features`: global arrays whose rows are
sharded over the batch axis, each device keeping the rows it computed), so no host or
device ever holds a whole split; evaluators that need one on the host call `to_host`.
"""

import logging

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from ml_collections import ConfigDict

from jvssl import sharding
from jvssl.data import pipeline
from jvssl.data.device import normalize_video
from jvssl.errors import ConfigError

log = logging.getLogger("jvssl")

READOUTS = ("mean", "time", "tokens")


class Unavailable(Exception):
  """An evaluator cannot run on this model (the method has no function it needs); the message says why."""


class TooLarge(ConfigError):
  """A split's outputs would take more device memory than the caller allows; the message says how much."""


@flax.struct.dataclass
class Features:
  """One function's outputs on every clip of a split, rows sharded over the batch axis of the mesh.

  x: [R, ...], what the function returns (float32 features); label: int32 [R]; mask: int32 [R], 1 for a real
  example, 0 for padding (R is whole eval batches) and for videos that could not be read; index: int32 [R], the
  row's position in the split. Rows are grouped by the device that computed them, not in split order.
  captions: when asked for, every example's captions in split order, on every process (none for a video that could
  not be read); None otherwise.
  """

  x: jax.Array
  label: jax.Array
  mask: jax.Array
  index: jax.Array
  num_examples: int = flax.struct.field(pytree_node=False)  # Examples in the split (after `limit`).
  captions: tuple[tuple[str, ...], ...] | None = flax.struct.field(pytree_node=False, default=None)

  def to_host(self) -> tuple[np.ndarray, np.ndarray]:
    """(x [num_examples, ...], label [num_examples]) as numpy on every process, in split order."""
    x, label, index = (multihost_utils.process_allgather(a, tiled=True) for a in (self.x, self.label, self.index))
    order = np.argsort(index, kind="stable")[: self.num_examples]
    return x[order], label[order]


def from_host(x, label, mesh: jax.sharding.Mesh, rules, mask=None) -> Features:
  """Features from numpy rows x [N, ...], label [N] that every process holds whole (tests, small tools).

  Rows are padded (mask 0) to a multiple of the number of data-parallel devices.
  """
  n = len(x)
  ways = sharding.data_parallel_size(mesh, rules)
  pad = -n % ways
  mask = np.ones(n, np.int32) if mask is None else np.asarray(mask, np.int32)
  rows = {"x": np.asarray(x, np.float32), "label": np.asarray(label, np.int32), "mask": mask}
  rows = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in rows.items()}
  rows["index"] = np.arange(n + pad, dtype=np.int32)
  put = lambda v: jax.device_put(v, sharding.batch_sharding(mesh, rules, v.ndim))
  return Features(**{k: put(v) for k, v in rows.items()}, num_examples=n)


def evaluator_config(**fields) -> ConfigDict:
  """An evaluator's default config: the fields every evaluator has, then `fields`.

  every_steps: how often the train loop runs it (0: at the end only); train_split and test_split: the
  labelled splits it reads; num_train: the first N clips of train_split (0: all).
  """
  return ConfigDict({"every_steps": 0, "train_split": "train", "test_split": "test", "num_train": 0, **fields})


def function_name(embedding: str, readout: str) -> str:
  """The predict function a frozen-feature evaluator reads.

  readout "mean": `embed_<embedding>`, one embedding per clip [B, D]. "time":
  `<embedding>_tokens` averaged over space but kept in time order, [B, T' * D], so a
  linear readout can see motion. "tokens": `<embedding>_tokens` as a sequence [B, T' * S, D],
  what an attentive probe pools.
  """
  if readout == "mean":
    return f"embed_{embedding}"
  if readout in ("time", "tokens"):
    return f"{embedding}_tokens"
  raise ConfigError(f"readout must be one of {', '.join(READOUTS)}, not '{readout}'")


def _readout(outputs: jax.Array, readout: str) -> jax.Array:
  if readout == "time":  # [B, T', S, D] -> [B, T' * D]
    return outputs.mean(axis=2).reshape(outputs.shape[0], -1)
  if readout == "tokens":  # [B, T', S, D] -> [B, T' * S, D]
    return outputs.reshape(outputs.shape[0], -1, outputs.shape[-1])
  return outputs


def eval_data_config(config):
  """The data config for evaluation: one clip per video."""
  cfg = config.copy_and_resolve_references()
  cfg.data.clips_per_video = 1
  return cfg


def jit_predict(predictor, name: str, data_config, readout: str = "mean"):
  """fn(batch of uint8 video) -> predictor.fns[name] on the normalised batch, jitted; Unavailable if absent."""
  if name not in predictor.fns:
    raise Unavailable(f"the method has no '{name}' (it has {', '.join(sorted(predictor.fns))})")
  fn = predictor.fns[name]

  @jax.jit
  def apply(params, rest, batch):
    model = nnx.merge(predictor.graphdef, params, rest, copy=True)
    if "video" in batch:  # Other towers' batches (text prompts) have none.
      batch = dict(batch, video=normalize_video(batch["video"], data_config))
    return _readout(fn(model, batch), readout).astype(jnp.float32)

  return lambda batch: apply(predictor.params, predictor.rest, batch)


def _concat_rows(parts: list[jax.Array]) -> jax.Array:
  """Global arrays [B, ...] sharded alike over their rows -> [len(parts) * B, ...] with the same sharding.

  Nothing moves between devices: each device's block of the result is its blocks of the
  parts, in order (so the result's rows are grouped by device, not by part).
  """
  first = parts[0]
  local: dict = {}
  for part in parts:
    for shard in part.addressable_shards:
      local.setdefault(shard.device, []).append(shard.data)
  shape = (sum(p.shape[0] for p in parts),) + first.shape[1:]
  arrays = [jnp.concatenate(blocks) for blocks in local.values()]
  return jax.make_array_from_single_device_arrays(shape, first.sharding, arrays)


def predict_split_sharded(
  config, mesh, fn, split: str, limit: int = 0, max_gb: float = 0.0, captions: bool = False
) -> Features:
  """Applies fn(batch) -> [B, ...] to every clip of `split` (the first `limit` if > 0); the outputs stay sharded.

  max_gb > 0: raises TooLarge, after the first batch, if the outputs would take more than that on each device.
  captions: also reads every caption of each video into `Features.captions`; Unavailable if the source has none.
  """
  config = eval_data_config(config)
  rules = sharding.rules_from_config(config)
  batch_size = config.eval.batch_size
  ds, num_examples = pipeline.eval_dataset(config, split, batch_size, limit=limit, captions=captions)
  if captions and "caption" not in ds.element_spec:
    raise Unavailable(f"data source '{config.data.source}' has no captions in split '{split}'")
  parts: dict[str, list] = {"x": [], "label": [], "mask": [], "index": []}
  local_captions: dict[int, list[str]] = {}  # This process's examples': split position -> captions.
  first_row = jax.process_index() * pipeline.local_batch_size(batch_size)  # This process's in each batch.
  row_sharding = sharding.batch_sharding(mesh, rules)
  with sharding.use(mesh, rules):
    for k, local in enumerate(pipeline.numpy_batches(ds)):
      if captions:
        for row, (texts, real) in enumerate(zip(local.pop("caption"), local["mask"])):
          texts = [t.decode(errors="replace") for t in texts if t] if real else []
          local_captions[k * batch_size + first_row + row] = texts
      batch = pipeline.to_global(local, mesh, rules)
      out = fn(batch)
      if k == 0 and max_gb > 0:
        num_rows = -(-num_examples // batch_size) * batch_size
        gb = num_rows * (out.nbytes / batch_size) / sharding.data_parallel_size(mesh, rules) / 1e9
        if gb > max_gb:
          raise TooLarge(f"the outputs of {num_examples} '{split}' clips take {gb:.3g} GB per device, over {max_gb}")
      parts["x"].append(jax.device_put(out, sharding.batch_sharding(mesh, rules, out.ndim)))
      parts["label"].append(batch["label"])
      parts["mask"].append(batch["mask"])
      offset = k * batch_size
      rows = lambda idx, offset=offset: np.arange(offset, offset + batch_size, dtype=np.int32)[idx]
      parts["index"].append(jax.make_array_from_callback((batch_size,), row_sharding, rows))
  every_caption = _gather_captions(local_captions, num_examples) if captions else None
  return Features(**{k: _concat_rows(v) for k, v in parts.items()}, num_examples=num_examples, captions=every_caption)


def _gather_captions(local: dict[int, list[str]], num_examples: int) -> tuple[tuple[str, ...], ...]:
  """Each process's {split position: captions} -> every example's captions in split order, on every process.

  Each example's captions travel as one UTF-8 row of a uint8 array, joined by newlines (a newline inside a
  caption becomes a space); every process holds the same number of positions (whole batches).
  """
  positions = np.array(sorted(local), np.int32)
  rows = ["\n".join(c.replace("\n", " ") for c in local[p]).encode() for p in positions]
  width = int(np.max(multihost_utils.process_allgather(np.int32(max(map(len, rows), default=0)))))
  table = np.zeros((len(rows), max(width, 1)), np.uint8)
  for i, row in enumerate(rows):
    table[i, : len(row)] = np.frombuffer(row, np.uint8)
  positions, table = (multihost_utils.process_allgather(a, tiled=True) for a in (positions, table))
  out: list[tuple[str, ...]] = [()] * num_examples
  for p, row in zip(positions, table):
    if p < num_examples:
      out[p] = tuple(c for c in row.tobytes().rstrip(b"\0").decode().split("\n") if c)
  return tuple(out)


def predict_split(config, mesh, fn, split: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Applies fn(batch) -> [B, ...] to every clip of `split`; returns (outputs, labels) on every host, in order."""
  return predict_split_sharded(config, mesh, fn, split, limit).to_host()


def holdout(features: Features, fraction: float, seed: int) -> jax.Array:
  """bool [R], sharded as the rows: the rows of a random `fraction` of the split's examples.

  Drawn over example positions, so the same examples are held out whatever the number of devices.
  """
  n = features.num_examples
  held = np.zeros(n, bool)
  held[np.random.default_rng(seed).permutation(n)[: int(n * fraction)]] = True
  return jax.jit(lambda table, index: (index < n) & table[jnp.minimum(index, n - 1)])(held, features.index)


def num_classes(*splits: Features) -> int:
  """1 + the largest label among the real rows of the splits."""
  return 1 + max(int(jnp.max(jnp.where(s.mask > 0, s.label, 0))) for s in splits)


class FeatureCache:
  """Computes each (split, function, readout, limit) once per evaluation round, and keeps it on the devices."""

  def __init__(self, config, predictor, mesh):
    self.config, self.predictor, self.mesh = config, predictor, mesh
    self._cache: dict = {}
    self._fns: dict = {}  # One jitted function per (name, readout): the splits share its compilation.

  def function(self, embedding: str, readout: str):
    """The jitted fn(batch) -> [B, ...] of (embedding, readout) (`jit_predict`), one per round, so its uses share
    a compilation; Unavailable if the method has none."""
    name = function_name(embedding, readout)
    if (name, readout) not in self._fns:
      self._fns[name, readout] = jit_predict(self.predictor, name, self.config.data, readout)
    return self._fns[name, readout]

  def sharded(
    self, split: str, embedding: str, readout: str, limit: int = 0, max_gb: float = 0.0, captions: bool = False
  ) -> Features:
    """`Features` of `split` from the method's function for (embedding, readout), rows sharded over the devices;
    TooLarge if they would take more than max_gb (> 0) per device. captions: with every video's captions."""
    name = function_name(embedding, readout)
    key = (split, name, readout, limit, captions)
    if key not in self._cache:
      fn = self.function(embedding, readout)
      self._cache[key] = predict_split_sharded(self.config, self.mesh, fn, split, limit, max_gb, captions)
      log.info("features %s/%s: %s", split, name, self._cache[key].x.shape)
    return self._cache[key]

  def get(self, split: str, embedding: str, readout: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, F], labels [N]) of `split` as numpy on every host: for evaluators that need the whole split."""
    return self.sharded(split, embedding, readout, limit).to_host()
