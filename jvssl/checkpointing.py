"""Orbax checkpoints of the train state, with a compatibility check before any restore.

Orbax writes each checkpoint into a temporary directory and renames it when
complete, so a crash mid-save never damages the checkpoints already there.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from jvssl.errors import CheckpointError, UserError


def check_writable(workdir: str) -> None:
  """Creates workdir if needed and fails with one line if it cannot be written."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_probe_{jax.process_index()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"workdir {workdir} is not writable: {e.strerror}") from None


class Checkpointer:
  """Saves and restores {"state": train state, "meta": json} under workdir/checkpoints."""

  def __init__(self, workdir: str, *, keep: int, async_save: bool):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
      self.directory,
      item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save),
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    self.manager.save(
      step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
    )

  def restore(self, step: int, abstract_state):
    """Restores checkpoint `step` into the shardings of `abstract_state` (ShapeDtypeStructs)."""
    check_compatible(self.saved_shapes(step), abstract_state, f"{self.directory}/{step}")
    restored = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
    )
    return restored.state, restored.meta

  def saved_shapes(self, step: int) -> dict:
    metadata = self.manager.item_metadata(step)
    tree = metadata["state"]
    tree = getattr(tree, "tree", tree)
    return tree_shapes(tree)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


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
