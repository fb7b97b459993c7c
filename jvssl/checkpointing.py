"""Orbax checkpoints of the train state, verified before they are trusted.

Every path is an etils.epath path, as in orbax itself, so a workdir may be local or `gs://`.
Orbax writes each checkpoint into a temporary directory and renames it (on GCS: marks it
with a commit file) when complete, so a crash mid-save never leaves a half checkpoint that
looks whole. Damage after that (a truncated, deleted or overwritten file) is caught on
restore: each save records a digest of every array in the checkpoint's "meta" item, and
a restored checkpoint whose arrays do not match them, or that cannot be read at all, is
damaged. `Checkpointer.restore_latest` then moves it aside to `<step>.damaged` (never
deletes it) and falls back to the newest good one.
"""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jvssl.errors import CheckpointError, UserError

log = logging.getLogger("jvssl")


class DamagedCheckpointError(CheckpointError):
  """A checkpoint that cannot be read, or whose arrays differ from the digests written with it."""

  def __init__(self, where: str, reason: str):
    super().__init__(f"checkpoint {where} is damaged: {reason}")
    self.reason = reason


def as_path(path) -> epath.Path:
  """`path` (str or path) as an epath.Path: a local one made absolute, as orbax needs; a URL (gs://...) as it is."""
  if "://" in str(path):
    return epath.Path(path)
  return epath.Path(path).expanduser().resolve()


def check_writable(workdir) -> None:
  """Creates workdir (local or gs://) if needed and fails with one line if it cannot be written."""
  path = as_path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_probe_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except Exception as e:  # OSError locally; a storage client's own errors for a bucket.
    raise UserError(f"workdir {workdir} is not writable: {_first_line(e)}") from None


class Checkpointer:
  """Saves and restores {"state": train state, "meta": json} under workdir/checkpoints.

  keep: the newest checkpoints to keep; keep_every > 0 also keeps, for good, each one whose
  step is a multiple of it.
  """

  def __init__(self, workdir, *, keep: int, async_save: bool, keep_every: int = 0):
    self.directory = as_path(workdir) / "checkpoints"
    policies = [ocp.checkpoint_managers.LatestN(keep)]
    if keep_every > 0:
      policies.append(ocp.checkpoint_managers.EveryNSteps(keep_every))
    self.manager = ocp.CheckpointManager(
      self.directory,
      item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
      options=ocp.CheckpointManagerOptions(
        create=True,
        enable_async_checkpointing=async_save,
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
      ),
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    """Saves `state` as checkpoint `step`, with `meta` (json) plus the digests of its arrays."""
    meta = dict(meta, digests=digests(state))
    self.manager.save(
      step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
    )

  def restore(self, step: int, abstract_state):
    """Restores checkpoint `step` into the shardings of `abstract_state` (ShapeDtypeStructs); returns (state, meta).

    Raises CheckpointError if it does not fit this config, DamagedCheckpointError if it
    cannot be read or its arrays differ from their digests.
    """
    where = f"{self.directory}/{step}"
    try:
      saved = self.saved_shapes(step)
    except Exception as e:
      raise DamagedCheckpointError(where, _first_line(e)) from None
    check_compatible(saved, abstract_state, where)
    try:
      restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
      )
      state, meta = restored.state, restored.meta
      # Checkpoints from before digests were written are trusted as they are.
      expected = meta.get("digests")
      if expected is not None:
        found = digests(state)
        mismatched = [name for name, d in found.items() if expected.get(name) != d]
        if mismatched:
          raise ValueError(
            f"{len(mismatched)} of {len(found)} arrays differ from the digests saved with them"
            f" (first: '{mismatched[0]}')"
          )
    except Exception as e:
      raise DamagedCheckpointError(where, _first_line(e)) from None
    return state, meta

  def restore_latest(self, abstract_state):
    """Restores the newest checkpoint that is not damaged; returns (step, state, meta), or None if there is none.

    Each damaged newer checkpoint is renamed `<step>.damaged` (so this step can be saved
    again) and reported in one line, once a good one has been restored; none is ever deleted.
    Raises CheckpointError if the checkpoints do not fit this config or all are damaged.
    """
    damaged = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state, meta = self.restore(step, abstract_state)
        reason = None
      except DamagedCheckpointError as e:
        reason = e.reason
      # Every process must take the same checkpoint, also when only some of them could not read it.
      if _everywhere(reason is None):
        self._move_aside(damaged, step)
        return step, state, meta
      damaged.append((step, reason or "another process failed to read it"))
    if damaged:
      others = ", ".join(str(step) for step, _ in damaged[1:])
      raise CheckpointError(
        f"every checkpoint in {self.directory} is damaged (step {damaged[0][0]}: {damaged[0][1]}"
        + (f"; also steps {others}" if others else "")
        + "); move them away to train from the start"
      )
    return None

  def _move_aside(self, damaged: list[tuple[int, str]], good: int) -> None:
    if not damaged:
      return
    if jax.process_index() == 0:
      for step, reason in damaged:
        source, target, n = self.directory / str(step), self.directory / f"{step}.damaged", 1
        while target.exists():
          target, n = self.directory / f"{step}.damaged.{n}", n + 1
        try:
          source.rename(target)
        except Exception as e:
          raise CheckpointError(
            f"checkpoint {source} is damaged ({reason}) and could not be moved aside: {_first_line(e)}"
          ) from None
        log.warning(
          "checkpoint %s is damaged: %s; moved it to %s and resumed from step %d", source, reason, target.name, good
        )
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices("jvssl_damaged_checkpoints_moved")
    self.manager.reload()

  def saved_shapes(self, step: int) -> dict:
    metadata = self.manager.item_metadata(step)
    tree = metadata["state"]
    tree = getattr(tree, "tree", tree)
    if not tree:
      raise ValueError("it has no array metadata")
    return tree_shapes(tree)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def digests(tree) -> dict[str, str]:
  """{"params/encoder/...": 16 hex digits} for every array of `tree`: a checksum of its bits, computed where it lives.

  Each array's 32-bit words w_i are summed twice, as w_i * (2i + 1) and as mix(w_i ^ mix(i))
  (murmur3's finalizer), modulo 2^32. Integer sums do not depend on the order of addition,
  so the digest is the same for any sharding and device count; a changed word always
  changes the first sum and a changed block changes both with probability 1 - 2^-64.
  Not cryptographic: it detects damage, not tampering.
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  names = [jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in leaves]
  arrays = [leaf for _, leaf in leaves]
  sums = jax.device_get(_checksum_fn(_replicated(arrays))(arrays))
  return {name: f"{int(a):08x}{int(b):08x}" for name, (a, b) in zip(names, sums)}


def _replicated(arrays):
  for x in arrays:
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding):
      return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
  return None


@functools.cache
def _checksum_fn(out_sharding):
  return jax.jit(lambda arrays: [_checksum(x) for x in arrays], out_shardings=out_sharding)


def _checksum(x: jax.Array) -> jax.Array:
  """uint32[2] of one array (see `digests`)."""
  words = _words(jnp.asarray(x))
  index = jnp.zeros(words.shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(words.ndim)):  # The flat index without reshaping a sharded array.
    index = index + jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * jnp.uint32(stride % 2**32)
    stride *= words.shape[axis]
  weighted = jnp.sum(words * (2 * index + 1), dtype=jnp.uint32)
  mixed = jnp.sum(_mix(words ^ _mix(index)), dtype=jnp.uint32)
  return jnp.stack([weighted, mixed])


def _words(x: jax.Array) -> jax.Array:
  """The bits of x as uint32 values: one per element, or two for 64-bit types."""
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  size = x.dtype.itemsize
  if size >= 4:
    return jax.lax.bitcast_convert_type(x, jnp.uint32)
  return jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16}[size]).astype(jnp.uint32)


def _mix(h: jax.Array) -> jax.Array:
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _everywhere(ok: bool) -> bool:
  """Whether `ok` holds on every process."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils

  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


def _first_line(e: BaseException, limit: int = 300) -> str:
  """The root cause of an exception in one short line.

  Orbax wraps tensorstore's error (e.g. 'OUT_OF_RANGE: Error reading "params.w/0.0" in OCDBT
  database ...') in one whose text is a many-line dump of the array's spec.
  """
  while (e.__cause__ or e.__context__) is not None:
    e = e.__cause__ or e.__context__
  text = (getattr(e, "strerror", None) or str(e) or type(e).__name__).strip().splitlines()[0]
  return text if len(text) <= limit else text[: limit - 3] + "..."


def tree_shapes(tree) -> dict[str, tuple[int, ...]]:
  """{"params/encoder/...": shape} for every array (or array metadata) leaf of `tree`."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
  return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(np.shape(leaf)) for path, leaf in leaves}


def check_compatible(saved: dict, abstract_state, where: str) -> None:
  """Raises CheckpointError naming the first parameter whose presence or shape differs.

  saved: {name: shape} of what exists; abstract_state: the tree this config needs.
  """
  expected = tree_shapes(abstract_state)
  for name, shape in expected.items():
    if name not in saved:
      raise CheckpointError(
        f"checkpoint {where} does not fit this config: it has no '{name}' (written by a different model or method?)"
      )
    if saved[name] != shape:
      raise CheckpointError(
        f"checkpoint {where} does not fit this config: '{name}' has shape {saved[name]}, this config needs {shape}"
      )
  extra = sorted(set(saved) - set(expected))
  if extra:
    raise CheckpointError(
      f"checkpoint {where} does not fit this config: unexpected '{extra[0]}'"
      f" ({len(extra)} entries this config does not have)"
    )
