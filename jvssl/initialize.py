"""Where a new run starts: random initialisation, or the weights of a checkpoint (`config.init`).

`initial_state(config, trainer)` is what the loop calls when the run's own workdir has no
checkpoint yet. `config.init.checkpoint` names a jvssl workdir (or its `checkpoints/` or
`checkpoints/<step>` folder): a pretraining run, or the `--out` of
`jvssl.tools.import_weights`. The checkpoint is read as it was saved, whatever this
config's shapes, and matched to the fresh state array by array on the host:

- an array of the same shape is loaded (in this config's dtype);
- a position table is adapted when the frames or the resolution changed: fixed sin-cos
  tables are the model's own, computed for its token count; a learned table is resampled
  on the token grid (`layers.resize_pos_table`); MViTv2's relative-position tables are
  interpolated linearly, as torchvision does for inputs of another size;
- any other difference of shape is an error naming the array;
- an array of this config that the checkpoint does not have is left at its initialisation.

init.what="encoder" takes the backbone's arrays only (fine-tuning from pretraining); "all"
every model variable (heads, decoders, statistics, teachers). The optimizer state, the step
and the run's key start afresh either way: a new run, not a resume. The report says what
was loaded, adapted, left at initialisation and not used.
"""

import dataclasses

import jax
import numpy as np
from etils import epath
from flax import nnx

from jvssl import checkpointing
from jvssl.errors import CheckpointError, ConfigError
from jvssl.models import layers
from jvssl.trainer import Trainer, TrainState

WHAT = ("encoder", "all")


@dataclasses.dataclass
class Saved:
  """The model arrays of one checkpoint, as saved."""

  where: str  # The checkpoint's folder, for messages.
  arrays: dict[str, np.ndarray]  # {"params/encoder/...": array} of its params and rest.
  config: dict | None  # The config it was written with (its meta), if it recorded one.


def initial_state(config, trainer: Trainer) -> tuple[TrainState, list[str]]:
  """The state a run starts from when its workdir has no checkpoint, and report lines (none without init).

  Returns trainer.init(config.seed) with config.init.checkpoint's arrays loaded into it, in
  the trainer's shardings.
  """
  if not config.init.checkpoint:
    return trainer.init(config.seed), []
  if config.init.what not in WHAT:
    raise ConfigError(f"init.what must be one of {', '.join(WHAT)}, not '{config.init.what}'")
  saved = read_checkpoint(config.init.checkpoint, config.init.step)
  return load(trainer.init(config.seed), trainer, saved, config.init.what)


def read_checkpoint(path: str, step: int = -1) -> Saved:
  """The params and rest of checkpoint `step` (-1: the latest) of a workdir, `checkpoints/` or `checkpoints/<step>`.

  Read onto the host whatever their shapes, each process reading all of them, verified as
  `Checkpointer.restore` verifies a resume.
  """
  workdir, step = _locate(path, step)
  # Only read: nothing is saved, so nothing is ever deleted, whatever `keep` says.
  ckpt = checkpointing.Checkpointer(str(workdir), keep=1_000_000, async_save=False)
  try:
    steps = ckpt.manager.all_steps()
    if not steps:
      raise CheckpointError(f"init.checkpoint: {ckpt.directory} has no checkpoints")
    step = max(steps) if step < 0 else step
    if step not in steps:
      raise CheckpointError(f"init.checkpoint: {ckpt.directory} has no step {step} (it has {sorted(steps)})")
    # The target is the saved tree itself, so no shape of this config is forced on it; the host's
    # CPU device keeps it out of accelerator memory.
    cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
    metadata = ckpt.manager.item_metadata(step)["state"]
    abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu),
      getattr(metadata, "tree", metadata),
      is_leaf=lambda x: hasattr(x, "shape"),
    )
    state, meta = ckpt.restore(step, abstract)
  finally:
    ckpt.close()
  arrays = {name: np.asarray(x) for name, x in _flat(state).items() if name.startswith(("params/", "rest/"))}
  return Saved(f"{ckpt.directory}/{step}", arrays, meta.get("config"))


def load(state: TrainState, trainer: Trainer, saved: Saved, what: str) -> tuple[TrainState, list[str]]:
  """`state` (fresh) with the arrays of `saved` that this config's model takes (see the module docstring).

  Returns (state in the trainer's shardings with a fresh optimizer state, report lines).
  """
  scope = ("params/encoder/", "rest/encoder/") if what == "encoder" else ("params/", "rest/")
  model = nnx.eval_shape(lambda: trainer.method.build(nnx.Rngs(0)))
  _, _, abstract_rest = nnx.split(model, nnx.Param, ...)
  # Plain Variables are constants the model computes for its input size (sin-cos tables): never loaded.
  fixed = {"rest/" + "/".join(map(str, p)) for p, v in nnx.to_flat_state(abstract_rest) if type(v) is nnx.Variable}
  fresh = {**_flat(state.params, "params"), **_flat(state.rest, "rest")}
  grids = (_token_grid(saved.config), model.encoder.grid)
  loaded, adapted, kept = {}, [], []
  for name, target in fresh.items():
    if not name.startswith(scope):
      continue
    if name in fixed:
      if name in saved.arrays and saved.arrays[name].shape != target.shape:
        adapted.append(f"{name} (sin-cos table computed for {target.shape[0]} tokens, was {len(saved.arrays[name])})")
      continue
    if name not in saved.arrays:
      kept.append(name)
      continue
    value = saved.arrays[name]
    if value.shape != target.shape:
      value, note = _adapt(name, value, target.shape, grids, saved.where)
      adapted.append(f"{name} ({note})")
    loaded[name] = value.astype(target.dtype)
  if not loaded:
    raise CheckpointError(
      f"init.checkpoint {saved.where} has none of the arrays this config's model needs under"
      f" {' or '.join(s.rstrip('/') for s in scope)} (written by another model or method?)"
    )

  shardings = {**_flat(trainer.state_shardings.params, "params"), **_flat(trainer.state_shardings.rest, "rest")}

  def place(name, x):
    if name not in loaded:
      return x
    value = loaded[name]
    return jax.make_array_from_callback(value.shape, shardings[name], lambda index: value[index])

  params = _map_named(place, state.params, "params")
  rest = _map_named(place, state.rest, "rest")
  opt_state = jax.jit(trainer.tx.init, out_shardings=trainer.state_shardings.opt_state)(params)
  state = state.replace(params=params, rest=rest, opt_state=opt_state)

  unused = sorted(n for n in saved.arrays if n.startswith(scope) and n not in fresh)
  elsewhere = sorted({_group(n) for n in saved.arrays if not n.startswith(scope)})
  lines = [
    f"init from {saved.where} (init.what='{what}'): loaded {len(loaded)} arrays"
    f" ({_counts(loaded)}); the optimizer state, step and random key start afresh"
  ]
  for title, names in (
    ("adapted to this input size", adapted),
    ("left at initialisation", kept),
    ("in the checkpoint but not in this config's model", unused),
  ):
    if names:
      lines.append(f"{title} ({len(names)}): {', '.join(names)}")
  if what == "encoder" and elsewhere:
    lines.append(f"not loaded (init.what='encoder'): {', '.join(elsewhere)}")
  return state, lines


def _adapt(name: str, value: np.ndarray, shape: tuple, grids, where: str) -> tuple[np.ndarray, str]:
  """A position table of another input size resampled to `shape`, and a note saying how; an error for anything else."""
  leaf = name.rsplit("/", 1)[-1]
  if value.ndim == 2 and len(shape) == 2 and value.shape[1] == shape[1]:
    if leaf.startswith("rel_pos_"):
      return layers.resize_axis(value, 0, shape[0], "linear"), f"interpolated from {value.shape[0]} entries"
    if leaf == "pos_embed":
      source, target = grids
      if source is None or int(np.prod(source)) != value.shape[0] or int(np.prod(target)) != shape[0]:
        raise CheckpointError(
          f"init.checkpoint {where}: '{name}' has {value.shape[0]} positions and its token grid is not recorded"
          " in its config, so it cannot be resampled to this config's; start from a checkpoint of this input size"
        )
      grid = "x".join(map(str, source))
      return layers.resize_pos_table(value, source, target), f"resampled from a {grid} token grid"
  raise CheckpointError(
    f"init.checkpoint {where} does not fit this config: '{name}' has shape {value.shape}, this config needs"
    f" {tuple(shape)} (set the model's fields as the checkpoint's run had them)"
  )


def _token_grid(config: dict | None) -> tuple[int, int, int] | None:
  """The (T, H, W) token grid of a ViT run's saved config, None if it recorded none."""
  try:
    pt, ph, pw = config["model"]["patch_size"]
    height, width = layers.image_hw(config["data"]["image_size"])
    return config["data"]["num_frames"] // pt, height // ph, width // pw
  except (KeyError, TypeError, ValueError):
    return None


def _locate(path: str, step: int) -> tuple[epath.Path, int]:
  """(workdir, step) of an init.checkpoint path; a `checkpoints/<step>` path names the step."""
  p = epath.Path(path) if "://" in path else epath.Path(path).expanduser().resolve()
  if not p.exists():
    raise CheckpointError(f"init.checkpoint {path} does not exist")
  if (p / "checkpoints").is_dir():
    return p, step
  if p.name == "checkpoints":
    return p.parent, step
  if p.name.isdigit() and p.parent.name == "checkpoints":
    if step >= 0 and step != int(p.name):
      raise CheckpointError(f"init.checkpoint {path} names step {p.name} but init.step is {step}: set one of them")
    return p.parent.parent, int(p.name)
  raise CheckpointError(
    f"init.checkpoint {path} is not a jvssl workdir (no checkpoints/ in it), its checkpoints/ or a checkpoints/<step>"
  )


def _flat(tree, prefix: str = "") -> dict:
  """{"prefix/a/b": leaf}, named as `checkpointing.tree_shapes` names them."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  head = prefix + "/" if prefix else ""
  return {head + jax.tree_util.keystr(path, simple=True, separator="/"): leaf for path, leaf in leaves}


def _map_named(fn, tree, prefix: str):
  """tree with each leaf x replaced by fn("prefix/a/b", x)."""
  return jax.tree_util.tree_map_with_path(
    lambda path, x: fn(f"{prefix}/{jax.tree_util.keystr(path, simple=True, separator='/')}", x), tree
  )


def _group(name: str) -> str:
  return "/".join(name.split("/")[:2])


def _counts(names) -> str:
  groups: dict[str, int] = {}
  for name in names:
    groups[_group(name)] = groups.get(_group(name), 0) + 1
  return ", ".join(f"{g} {n}" for g, n in groups.items())
