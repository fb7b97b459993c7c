"""Multi-slice meshes: config.mesh.dcn_* spreads mesh axes over slices, and 8 simulated CPU devices as 2 slices
of 4 train like one device."""

import dataclasses

import numpy as np
import pytest
from jax.experimental import mesh_utils

from jvssl import distributed, sharding
from jvssl.errors import ConfigError

from conftest import run_python


@dataclasses.dataclass(frozen=True)
class StandIn:
  """What the mesh builder reads of a device, for topologies this machine does not have."""

  id: int
  process_index: int
  platform: str = "cpu"
  device_kind: str = "cpu"


@dataclasses.dataclass(frozen=True)
class SlicedStandIn(StandIn):
  slice_index: int = 0


def _mesh(ici=(-1, 1, 1), dcn=(1, 1, 1)) -> dict:
  return dict(zip(sharding.MESH_AXES, ici)) | dict(zip(sharding.DCN_AXES, dcn))


def _slice_of(grid, per_slice):
  return np.vectorize(lambda d: d.id // per_slice)(grid)


def _dcn_block(shape, ici, dcn):
  """For every mesh position, the row-major index of its (dcn) block: the slice it must come from."""
  index = np.indices(shape)
  return np.ravel_multi_index(tuple(index[a] // ici[a] for a in range(3)), dcn)


@pytest.mark.parametrize(
  "ici, dcn",
  [
    ((1, 4, 1), (2, 1, 1)),
    ((2, 1, 2), (2, 1, 1)),
    ((2, 2, 1), (1, 2, 1)),
    ((1, 2, 2), (1, 1, 2)),
    ((1, 2, 1), (2, 2, 1)),
  ],
)
def test_each_slice_fills_one_ici_block(ici, dcn):
  """One process of 8 CPU devices cut into consecutive slices; a mesh axis crosses slices only in its dcn part."""
  devices = [StandIn(i, 0) for i in range(8)]
  grid = sharding.device_grid(_mesh(ici, dcn), devices)
  assert grid.shape == tuple(i * d for i, d in zip(ici, dcn))
  num_slices = int(np.prod(dcn))
  np.testing.assert_array_equal(_slice_of(grid, 8 // num_slices), _dcn_block(grid.shape, ici, dcn))
  # The layout of jax's own builder where devices carry a slice_index (multi-slice TPU).
  sliced = [SlicedStandIn(i, i // 2, slice_index=i // (8 // num_slices)) for i in range(8)]
  ours = np.vectorize(lambda d: d.id)(sharding.device_grid(_mesh(ici, dcn), sliced))
  jax_own = np.vectorize(lambda d: d.id)(mesh_utils.create_hybrid_device_mesh(ici, dcn, sliced))
  np.testing.assert_array_equal(ours, jax_own)


def test_slices_group_whole_processes_and_hosts():
  processes = [StandIn(i, i // 2) for i in range(8)]  # 4 processes of 2 devices (CPU: no slice_index)
  assert [[d.process_index for d in s] for s in sharding.slices(processes, 2)] == [[0, 0, 1, 1], [2, 2, 3, 3]]
  # XLA gives GPUs one slice_index per host: 4 hosts of 2 one-GPU processes as 2 slices of 2 hosts each.
  gpus = [SlicedStandIn(i, i, "gpu", "NVIDIA H100", slice_index=i // 2) for i in range(8)]
  assert [sorted({d.slice_index for d in s}) for s in sharding.slices(gpus, 2)] == [[0, 1], [2, 3]]
  # One slice over several hosts is the plain mesh (jax.make_mesh refuses devices with several slice_index).
  assert sharding.device_grid(_mesh(), gpus).shape == (8, 1, 1)


def test_bad_slice_topologies_are_one_line_config_errors():
  cpus = [StandIn(i, 0) for i in range(8)]
  cases = [
    (_mesh(dcn=(3, 1, 1)), cpus, "8 devices do not split into mesh.dcn_data x dcn_fsdp x dcn_model = 3 slices"),
    (_mesh(dcn=(0, 1, 1)), cpus, "mesh.dcn_\\* count slices and must be >= 1"),
    (_mesh((1, 8, 1), (2, 1, 1)), cpus, "needs 8 devices per slice, have 4 devices in each of 2 slices"),
    (_mesh((-1, 3, 1), (2, 1, 1)), cpus, "4 devices in each of 2 slices do not divide into mesh"),
    (_mesh(dcn=(2, 1, 1)), [StandIn(i, int(i >= 6)) for i in range(8)], "2 processes of 6/2 devices do not make"),
    (_mesh(), [SlicedStandIn(i, i // 4, "tpu", slice_index=i // 4) for i in range(8)], "form 2 TPU slices"),
  ]
  for mesh, devices, message in cases:
    with pytest.raises(ConfigError, match=message) as err:
      sharding.device_grid(mesh, devices)
    assert "\n" not in str(err.value)


def test_multislice_tpu_joins_the_other_slices():
  assert distributed.detect(distributed.Cluster(), {"MEGASCALE_NUM_SLICES": "2"}) == "auto"
  assert distributed.detect(distributed.Cluster(), {"MEGASCALE_NUM_SLICES": "1"}) == "single"


_TWO_SLICES = r"""
import jax, numpy as np
from jvssl import config as config_lib, sharding, trainer as trainer_lib

def run(mode, ici, dcn, devices):
  # A tiny supervised ViT: deterministic given the batch (no masking, no dropout), for exact comparisons.
  c = config_lib.base_config(model="vit", method="classify")
  c.data.num_frames, c.data.frame_stride, c.data.image_size, c.data.batch_size = 4, 1, 32, 8
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 1, 2, 64
  c.model.patch_size, c.model.final_norm = (2, 8, 8), "pooled"
  c.method.num_classes = 8
  c.sharding.mode = mode
  c.mesh.update(dict(zip(sharding.MESH_AXES, ici)) | dict(zip(sharding.DCN_AXES, dcn)))
  # Plain SGD: the parameter change is lr * gradient, so gradient differences show directly.
  c.optimizer.name, c.optimizer.b1, c.optimizer.weight_decay = "sgd", 0.0, 0.0
  c.optimizer.lr, c.schedule.warmup_steps = 0.1, 0
  mesh = sharding.make_mesh(c.mesh, devices)
  trainer = trainer_lib.Trainer(c, mesh, 10, 10.0)
  rng = np.random.default_rng(0)
  local = {"video": rng.integers(0, 255, (8, 4, 32, 32, 3), dtype=np.uint8),
           "label": rng.integers(0, 8, (8,), dtype=np.int32)}
  batch = {k: jax.device_put(v, sharding.batch_sharding(mesh, trainer.rules, v.ndim)) for k, v in local.items()}
  state, metrics = trainer.step(trainer.init(0), batch)
  specs = sorted({str(x.sharding.spec) for x in jax.tree.leaves(state.params)})
  return mesh, float(metrics["loss"]), [np.asarray(x) for x in jax.tree.leaves(state.params)], specs

_, loss1, params1, _ = run("dp", (1, 1, 1), (1, 1, 1), jax.devices()[:1])
# Two slices of 4 devices (ids 0-3 and 4-7): FSDP or tensor parallel inside a slice, data parallel across them.
for mode, ici, dcn in (("fsdp", (1, 4, 1), (2, 1, 1)), ("tp", (2, 1, 2), (2, 1, 1))):
  mesh, loss, params, specs = run(mode, ici, dcn, jax.devices())
  assert dict(mesh.shape) == {"data": ici[0] * dcn[0], "fsdp": ici[1], "model": ici[2]}, mesh.shape
  # Slice s holds the data rows [s * ici_data, (s + 1) * ici_data): the ICI axes stay inside one slice.
  slice_of = np.vectorize(lambda d: d.id // 4)(mesh.devices)
  assert (slice_of == (np.arange(mesh.shape["data"]) // ici[0])[:, None, None]).all(), slice_of
  assert abs(loss - loss1) <= 1e-5 * max(1.0, abs(loss1)), (mode, loss, loss1)
  diff = max(float(np.abs(a - b).max()) for a, b in zip(params, params1))
  assert diff <= 1e-5, (mode, diff)
  print(mode, "loss", loss, "one device", loss1, "max param diff", diff, "param specs", specs)
print("OK")
"""


def test_two_slices_of_4_devices_match_one_device():
  out = run_python(_TWO_SLICES, devices=8, optimize=False).stdout
  assert out.strip().endswith("OK"), out
  # The weights really are sharded inside the slices (otherwise the test would compare replicas).
  assert any(line.startswith("fsdp ") and "'fsdp'" in line for line in out.splitlines()), out
  assert any(line.startswith("tp ") and "'model'" in line for line in out.splitlines()), out
