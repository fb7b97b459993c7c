"""Device mesh and logical-axis sharding.

Parameters and activations are annotated with logical axis names ("batch",
"embed", "mlp", "heads", ...). `config.sharding.rules` maps those names to
mesh axes, so data parallel, FSDP and tensor parallel are config changes.
On several slices (TPU multi-slice, GPU hosts) `config.mesh.dcn_*` says which
mesh axes cross the slower network between them.
"""

import collections
import contextlib
import contextvars
import math
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from jvssl.errors import ConfigError

MESH_AXES = ("data", "fsdp", "model")
# config.mesh.<axis> is the axis's size within one slice (ICI) and config.mesh.dcn_<axis> the number of slices it
# spans over the data-centre network (MaxText's ici_*/dcn_* parallelism); the mesh axis is ici x dcn long.
DCN_AXES = tuple(f"dcn_{name}" for name in MESH_AXES)
# Parameter axes ("embed", "mlp", "heads", "kv", "classes", ...) and activation axes ("batch",
# "act_seq", "act_embed", "act_mlp", "act_heads") have separate names, so FSDP can shard weights
# over "fsdp" while activations are sharded over the batch on the same mesh axis.
RULE_SETS = {
  "dp": (("batch", ("data", "fsdp")),),
  "fsdp": (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("decoder_embed", "fsdp")),
  "tp": (
    ("batch", ("data", "fsdp")),
    ("mlp", "model"),
    ("heads", "model"),
    ("act_mlp", "model"),
    ("act_heads", "model"),
  ),
  "fsdp_tp": (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("decoder_embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("act_mlp", "model"),
    ("act_heads", "model"),
  ),
}
# Variables get their logical axes as metadata and no sharding at creation: the
# real sharded arrays are made by a jit whose out_shardings come from the rules.
nnx.use_eager_sharding(False)


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """The (data, fsdp, model) mesh of `config.mesh` over `devices` (default: all); each axis is ici x dcn long."""
  grid = device_grid(mesh_config, list(devices if devices is not None else jax.devices()))
  return jax.sharding.Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def device_grid(mesh_config, devices: Sequence[Any]) -> np.ndarray:
  """`devices` as a [data, fsdp, model] array: each slice fills one block of the ICI shape, and the blocks tile the
  DCN shape in row-major slice order, so a mesh axis crosses slices only in its major (dcn) part. This is
  mesh_utils.create_hybrid_device_mesh, with slices found by `slices` rather than only by `slice_index`.
  """
  dcn = [int(mesh_config[name]) for name in DCN_AXES]
  if min(dcn) < 1:
    raise ConfigError(f"mesh.dcn_* count slices and must be >= 1, got {dict(zip(DCN_AXES, dcn))}")
  groups = slices(devices, math.prod(dcn))
  ici = _ici_shape(mesh_config, len(groups[0]), len(groups))
  # Splitting a physical axis is a fallback for shapes the torus does not give whole (jax.make_mesh allows it on v5e).
  blocks = np.stack([mesh_utils.create_device_mesh(ici, g, allow_split_physical_axes=True) for g in groups])
  n = len(MESH_AXES)
  # [*dcn, *ici] -> [dcn_data, data, dcn_fsdp, fsdp, dcn_model, model] -> [data, fsdp, model].
  grid = blocks.reshape(dcn + ici).transpose([i for axis in range(n) for i in (axis, axis + n)])
  return grid.reshape([d * i for d, i in zip(dcn, ici)])


def slices(devices: Sequence[Any], num_slices: int) -> list[list[Any]]:
  """Splits `devices` into `num_slices` equal groups that share the fast network (ICI, NVLink), keeping their order.

  Devices first group by what the runtime tells apart (the granules, in key order): TPU slices (`slice_index` on
  TPU), hosts (XLA gives GPUs one `slice_index` per host) or, without a `slice_index` (CPU), processes.
  Consecutive granules make one slice (2 slices over 4 GPU hosts: hosts 0-1 and 2-3); with fewer granules than
  slices each granule's devices are cut into consecutive runs (8 simulated CPU devices in one process as 2
  slices: devices 0-3 and 4-7). TPU slices map one to one, since ICI does not reach across them.
  """
  if len(devices) % num_slices:
    raise ConfigError(
      f"{len(devices)} devices do not split into mesh.dcn_data x dcn_fsdp x dcn_model = {num_slices} slices"
    )
  key = "slice_index" if hasattr(devices[0], "slice_index") else "process_index"
  by_key: dict[int, list[Any]] = collections.defaultdict(list)
  for device in devices:
    by_key[getattr(device, key)].append(device)
  granules = [by_key[k] for k in sorted(by_key)]
  tpu = devices[0].platform == "tpu"
  if tpu and len(granules) != num_slices:
    raise ConfigError(
      f"the devices form {len(granules)} TPU slices: make mesh.dcn_data x dcn_fsdp x dcn_model = {len(granules)}"
    )
  if len(granules) % num_slices == 0:
    per = len(granules) // num_slices
    groups = [[d for g in granules[i * per : (i + 1) * per] for d in g] for i in range(num_slices)]
  elif num_slices % len(granules) == 0:
    cut = num_slices // len(granules)
    groups = [g[j * len(g) // cut : (j + 1) * len(g) // cut] for g in granules for j in range(cut)]
  else:
    groups = []
  if not groups or any(len(g) != len(devices) // num_slices for g in groups):
    what = "hosts" if key == "slice_index" else "processes"
    sizes = "/".join(str(len(g)) for g in granules)
    raise ConfigError(
      f"{len(granules)} {what} of {sizes} devices do not make mesh.dcn_data x dcn_fsdp x dcn_model = "
      f"{num_slices} equal slices"
    )
  return groups


def axis_sizes(mesh_config, num_devices: int) -> dict[str, int]:
  """{"data": n, "fsdp": n, "model": n}: each axis's length (ici x dcn) of config.mesh over num_devices devices, as
  `make_mesh` would lay them out, without the devices."""
  dcn = [int(mesh_config[name]) for name in DCN_AXES]
  num_slices = math.prod(dcn)
  if num_devices % num_slices:
    raise ConfigError(f"{num_devices} devices do not split into mesh.dcn_* = {num_slices} slices")
  ici = _ici_shape(mesh_config, num_devices // num_slices, num_slices)
  return {name: i * d for name, i, d in zip(MESH_AXES, ici, dcn)}


def _ici_shape(mesh_config, per_slice: int, num_slices: int) -> list[int]:
  """config.mesh's (data, fsdp, model) within one slice of `per_slice` devices, its -1 filled in."""
  shape = [int(mesh_config[name]) for name in MESH_AXES]
  given = dict(zip(MESH_AXES, shape))
  have = f"{per_slice} devices" + (f" in each of {num_slices} slices" if num_slices > 1 else "")
  if shape.count(-1) > 1:
    raise ConfigError(f"at most one mesh axis may be -1, got {given}")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if per_slice % known:
      raise ConfigError(f"{have} do not divide into mesh {given}")
    shape[shape.index(-1)] = per_slice // known
  if math.prod(shape) != per_slice:
    unit = " per slice" if num_slices > 1 else ""
    raise ConfigError(f"mesh {given} needs {math.prod(shape)} devices{unit}, have {have}")
  return shape


def rules_from_config(config) -> tuple[tuple[str, Any], ...]:
  """The rule set `sharding.mode`, with `sharding.rules` entries replacing or adding rules."""
  if config.sharding.mode not in RULE_SETS:
    raise ConfigError(f"sharding.mode must be one of {', '.join(RULE_SETS)}, not '{config.sharding.mode}'")
  table = dict(RULE_SETS[config.sharding.mode])
  for name, axes in config.sharding.rules:
    table[name] = tuple(axes) if isinstance(axes, list) else axes
  return tuple(table.items())


_current_rules: contextvars.ContextVar = contextvars.ContextVar("jvssl_logical_rules", default=None)


@contextlib.contextmanager
def use(mesh: jax.sharding.Mesh, rules):
  """Makes `mesh` and the logical rules current, for `constrain` inside traced functions."""
  token = _current_rules.set(tuple(rules))
  try:
    with jax.set_mesh(mesh):
      yield
  finally:
    _current_rules.reset(token)


def current_rules():
  """The logical rules made current by `use`; None outside it."""
  return _current_rules.get()


def logical_to_spec(axes: Sequence[str | None], rules) -> P:
  """Logical axis names -> PartitionSpec of mesh axes; names without a rule are replicated.

  A mesh axis shards at most one dimension: a later dimension whose rule names a mesh
  axis already used (FSDP's ("embed", "decoder_embed") kernel) stays replicated.
  """
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name in axes:
    mesh_axes = table.get(name) if name is not None else None
    names = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes or ())
    if used.intersection(names):
      mesh_axes = None
    used.update(names if mesh_axes is not None else ())
    spec.append(mesh_axes)
  return P(*spec)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
  """Sharding constraint on an activation by logical axis names; a no-op outside `use`."""
  rules = _current_rules.get()
  if rules is None or jax.sharding.get_abstract_mesh().empty:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(axes, rules))


def batch_sharding(mesh: jax.sharding.Mesh, rules, ndim: int = 1) -> NamedSharding:
  """Sharding for an input array whose leading axis is the batch."""
  return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1), rules))


def state_shardings(abstract_state, mesh: jax.sharding.Mesh, rules):
  """NamedShardings (as a pure dict) for an nnx State of abstract Variables, from their logical axes."""
  specs = nnx.to_pure_dict(nnx.get_partition_spec(abstract_state))
  return jax.tree.map(
    lambda spec: NamedSharding(mesh, logical_to_spec(tuple(spec), rules)), specs, is_leaf=lambda x: isinstance(x, P)
  )


def data_parallel_size(mesh: jax.sharding.Mesh, rules) -> int:
  """Number of ways the batch is split: the product of the mesh axes the "batch" rule names."""
  axes = dict(rules).get("batch")
  axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
  return math.prod(mesh.shape[a] for a in axes)


def check_batch(batch_size: int, grad_accum_steps: int, mesh: jax.sharding.Mesh, rules) -> None:
  """Raises ConfigError unless every (micro-)batch splits evenly over the data-parallel devices."""
  ways = data_parallel_size(mesh, rules)
  if grad_accum_steps < 1 or batch_size % grad_accum_steps:
    raise ConfigError(f"data.batch_size {batch_size} is not divisible by train.grad_accum_steps {grad_accum_steps}")
  micro = batch_size // grad_accum_steps
  if micro % ways:
    what = (
      f"the micro-batch {micro} (data.batch_size / train.grad_accum_steps)"
      if grad_accum_steps > 1
      else (f"data.batch_size {batch_size}")
    )
    raise ConfigError(
      f"{what} does not divide over the {ways} data-parallel devices (mesh axes "
      f"{dict(mesh.shape)}); make it a multiple of {ways} or change config.mesh"
    )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
