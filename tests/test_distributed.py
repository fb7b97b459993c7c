"""Two CPU processes on localhost train like one process holding the same global batch."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_python

# Both runs: the tiny recipe, 3 steps of 8 clips in 2 micro-batches each, a checkpoint at the end, no evaluations.
_TRAIN = """
import sys, numpy as np, jax
from jvssl import config as config_lib, distributed, train
{init}
c = config_lib.load("configs/videomae_synthetic.py:runlocal", ["train.num_steps=3", "train.checkpoint_every_steps=3",
                                                               "train.grad_accum_steps=2", "evals={}"])
result = train.train(c, sys.argv[1])
params = jax.tree.map(lambda x: np.asarray(jax.device_get(jax.experimental.multihost_utils.process_allgather(x,
                      tiled=True))), result.state.params)
flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
if jax.process_index() == 0:
  np.savez(sys.argv[2], **flat)
print("devices", jax.device_count(), "processes", jax.process_count())
"""
_JOIN = (
  "distributed.initialize(distributed.Cluster('127.0.0.1:{port}', 2, int(sys.argv[3])))\n"
  "assert jax.process_count() == 2 and jax.device_count() == 2"
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _load(path):
  with np.load(path) as f:
    return dict(f)


def test_two_processes_match_one(tmp_path):
  code = _TRAIN.replace("{init}", "import jax.experimental.multihost_utils\n" + _JOIN.format(port=_free_port()))
  # Without XLA's backend optimisations, as run_python(optimize=False) runs the one-process side.
  flags = "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  work = str(tmp_path / "two")
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", code, work, str(tmp_path / "two.npz"), str(i)],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-4000:]

  # One process, two devices: the same (data=2) mesh and global batch, read by one host. It then
  # restores the checkpoint both processes wrote together.
  one = (
    _TRAIN.replace("{init}", "import jax.experimental.multihost_utils")
    + f"""
from jvssl import checkpointing
ckpt = checkpointing.Checkpointer({work!r}, keep=1, async_save=False)
assert ckpt.latest_step() == 3, ckpt.latest_step()
state, _ = ckpt.restore(3, result.trainer.abstract_state())
np.savez({str(tmp_path / "restored.npz")!r},
         **{{jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(state.params)[0]}})
"""
  )
  run_python(
    f"import sys; sys.argv = ['-c', {str(tmp_path / 'one')!r}, {str(tmp_path / 'one.npz')!r}]\n" + one,
    devices=2,
    optimize=False,
  )
  two, single = _load(tmp_path / "two.npz"), _load(tmp_path / "one.npz")
  assert two.keys() == single.keys()
  for name in two:
    # Same program and batch; only the all-reduce (gloo across processes vs in-process) may round differently.
    np.testing.assert_allclose(two[name], single[name], rtol=1e-5, atol=1e-6, err_msg=name)
  assert any(np.abs(v).sum() > 0 for v in two.values())
  back = _load(tmp_path / "restored.npz")
  for name in two:
    np.testing.assert_array_equal(back[name], two[name], err_msg=name)


@pytest.mark.parametrize(
  "env,expected",
  [
    ({}, "single"),
    ({"SLURM_NTASKS": "8"}, "auto"),
    ({"SLURM_NTASKS": "1"}, "single"),
    ({"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3"}, "auto"),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, "single"),
  ],
)
def test_detect_from_environment(env, expected):
  from jvssl import distributed

  assert distributed.detect(distributed.Cluster(), env) == expected


def test_explicit_flags_go_together():
  from jvssl import distributed
  from jvssl.errors import ConfigError

  assert distributed.detect(distributed.Cluster("h:1", 2, 1), {}) == "explicit"
  with pytest.raises(ConfigError, match="go together"):
    distributed.detect(distributed.Cluster("h:1", None, 0), {})
  with pytest.raises(ConfigError, match="not in"):
    distributed.detect(distributed.Cluster("h:1", 2, 2), {})


def test_slurm_one_task_per_node_sees_all_its_gpus():
  from jvssl import distributed

  assert distributed.slurm_local_devices({"SLURM_NTASKS_PER_NODE": "1", "SLURM_GPUS_ON_NODE": "8"}) == list(range(8))
  assert distributed.slurm_local_devices({"SLURM_NTASKS_PER_NODE": "8", "SLURM_GPUS_ON_NODE": "8"}) is None
