"""Device mesh and logical-axis sharding.

Parameters and activations are annotated with logical axis names ("batch",
"embed", "mlp", "heads", ...). `config.sharding.rules` maps those names to
mesh axes, so data parallel, FSDP and tensor parallel are config changes.
"""

import contextlib
import contextvars
import math
from typing import Any, Sequence

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from jvssl.errors import ConfigError

MESH_AXES = ("data", "fsdp", "model")
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
  """Builds a (data, fsdp, model) mesh; one axis may be -1 to take the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  shape = [int(mesh_config[name]) for name in MESH_AXES]
  if shape.count(-1) > 1:
    raise ConfigError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, shape))}")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if len(devices) % known:
      raise ConfigError(f"{len(devices)} devices do not divide into mesh {dict(zip(MESH_AXES, shape))}")
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices):
    raise ConfigError(f"mesh {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} devices, have {len(devices)}")
  return jax.make_mesh(
    tuple(shape), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES), devices=devices
  )


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
