"""The memory planner: its estimate against the memory one step really takes, remat planning, batch split, errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from jvssl import cli
from jvssl.models import vit
from jvssl.tools import memory_plan

from conftest import REPO

# A ViT classifier (the fine-tuning recipe's CPU shape) on 8 clips of 8 frames of 64 px in 2x8x8 tubelets: 256 tokens
# through 6 blocks, so the encoder's activations, which remat trades for recompute, are most of the step's
# temporaries (about 230 MB: well above what the runtime allocates besides them). XLA's attention, not the CPU's
# chunked kernel, whose own checkpointing would blur the comparison of policies.
SPEC = os.path.join(REPO, "configs", "videomae_finetune_k400.py:runlocal")
OVERRIDES = ["data.num_frames=8", "data.image_size=64", "model.patch_size=(2,8,8)", "model.depth=6"]
OVERRIDES.append("model.attention_impl=xla")
CLIPS = 8

# In a fresh process, so that the step's first run is the process's first use of that much memory: the RSS the step
# adds (its peak, VmHWM, reset to the RSS just before it) against the estimate of what it adds, its temporaries and
# outputs; the state and batch are resident by then and are compared byte for byte. Full remat is only compiled.
MEASURE = f"""
import dataclasses
import json

import jax
import numpy as np

from jvssl import cli
from jvssl.tools import memory_plan


def status(key):
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


config = cli.load_config({SPEC!r}, {OVERRIDES!r})
sizes = memory_plan.mesh_sizes(config.mesh, 1)
full, _ = memory_plan.read_estimate(memory_plan.compile_step(config, {CLIPS}, "full"), sizes)
step = memory_plan.compile_step(config, {CLIPS}, "none")
none, _ = memory_plan.read_estimate(step, sizes)
state = step.trainer.init(0)
rng = np.random.default_rng(0)
batch = {{
  name: jax.device_put(rng.integers(0, 256 if name == "video" else 1, x.shape).astype(x.dtype), x.sharding)
  for name, x in step.batch.items()
}}
jax.block_until_ready((state, batch))
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
  f.write("5")  # VmHWM := VmRSS.
state, metrics = step.compiled(state, batch)
jax.block_until_ready((state, metrics))
print(json.dumps({{
  "none": dataclasses.asdict(none),
  "full": dataclasses.asdict(full),
  "measured_step": status("VmHWM:") - before,
  "state": sum(x.nbytes for x in jax.tree.leaves(state)),
  "batch": sum(x.nbytes for x in batch.values()),
}}))
"""


@pytest.fixture(scope="module")
def measured():
  """The estimates of the ViT classifier's step without and with full remat, and what running the first took."""
  # No JAX device memory statistics on the CPU (memory_stats() is None): the process's resident memory is the
  # measure. The default glibc malloc maps a block this large afresh, so the step's temporaries show in the RSS.
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("GLIBC_TUNABLES", None)
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run([sys.executable, "-c", MEASURE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  m = json.loads(proc.stdout.strip().splitlines()[-1])
  for name in ("none", "full"):
    m[name] = memory_plan.Estimate(**m[name])
  return m


def test_estimate_matches_the_memory_a_step_takes_on_the_cpu(measured):
  none = measured["none"]
  assert none.state == measured["state"] and none.batch == measured["batch"]
  assert none.step > 100 * 2**20  # The temporaries dominate what the runtime adds of its own.
  # Tolerance: the first run of an executable also maps some 15-20 MB of its own (thread-pool stacks, kernel
  # scratch), about +7% here, and a page of the temporaries that no buffer happens to write is never resident.
  # -10% / +20% fails an estimate off by half or by double, and one that leaves the temporaries out.
  ratio = measured["measured_step"] / none.step
  assert 0.9 <= ratio <= 1.2, (measured["measured_step"], none)


def test_full_remat_keeps_fewer_temporaries_and_bigger_budgets_need_no_more_remat(measured):
  none, full = measured["none"], measured["full"]
  assert full.state == none.state and full.batch == none.batch
  # Full remat keeps only each block's input for the backward pass. XLA:CPU still schedules much of the
  # recomputation early, even with the memory-optimised scheduler, so the saving is some 13% here, not most.
  assert full.temp < 0.95 * none.temp
  gib = lambda n: n / memory_plan.GiB
  below, between, above = gib(full.peak) * 0.99, gib(full.peak + none.peak) / 2, gib(none.peak) * 1.01
  fits = memory_plan.choose({"none": none.peak, "full": full.peak}, (below, between, above))
  assert fits == {below: None, between: "full", above: "none"}


def test_choose_takes_the_least_recompute_that_fits_each_budget():
  assert set(memory_plan.POLICIES) == set(vit.REMAT_POLICIES) and memory_plan.POLICIES[0] == "none"
  gib = memory_plan.GiB
  # "dots" needing more than "dots_no_batch" (it saves more) does not make a budget skip the cheaper one.
  peaks = {"none": 40 * gib, "dots_no_batch": 20 * gib, "dots": 30 * gib, "full": 12 * gib}
  budgets = (8.0, 16.0, 24.0, 32.0, 80.0)
  fits = memory_plan.choose(peaks, budgets)
  assert fits == {8.0: None, 16.0: "full", 24.0: "dots_no_batch", 32.0: "dots_no_batch", 80.0: "none"}
  order = [memory_plan.POLICIES.index(fits[b]) for b in budgets if fits[b]]
  assert order == sorted(order, reverse=True)  # A bigger budget never needs more recompute.


def test_markdown_row_of_a_plan():
  mib = 2**20
  estimate = lambda temp: memory_plan.Estimate(
    state=300 * mib, batch=20 * mib, temp=temp, outputs=0, code=0, compile_s=5
  )
  plan = {
    "config": "configs/r.py:vit_b",
    "model": "vit-B",
    "method": "videomae",
    "backend": "cpu",
    "devices": 64,
    "per_device_batch": 32,
    "configured_remat": "none",
    "state_layout": "replicated",
    "estimates": {"none": estimate(20 * 1024 * mib), "full": estimate(8 * 1024 * mib)},
    "fits": {16.0: "full", 32.0: "none"},
  }
  text = memory_plan.markdown([plan, {"config": "configs/x.py", "error": "no device count is known"}], (16.0, 32.0))
  # The recipe's own policy in bold, "-" for a policy not tried.
  assert (
    "| configs/r.py:vit_b | vit-B | videomae | 32 (64) | 0.293 | **20.31** / - / - / 8.31 | full | none | 10 |" in text
  )
  assert "| configs/x.py | no device count is known |" in text


def _config(spec, *overrides):
  return cli.load_config(os.path.join(REPO, "configs", spec), overrides)


def test_the_batch_splits_over_the_devices_of_the_published_run():
  assert memory_plan.split_batch("videomae_k400.py:vit_l", _config("videomae_k400.py:vit_l"))[:2] == (8, 64)
  assert memory_plan.split_batch("videomae_k400.py:vit_h", _config("videomae_k400.py:vit_h"))[:2] == (16, 64)
  # VideoMAE V2's ViT-g: 32 videos x 4 clips on each of 64 GPUs.
  assert memory_plan.split_batch("videomae_v2_hybrid.py:vit_g", _config("videomae_v2_hybrid.py:vit_g"))[:2] == (128, 64)
  assert memory_plan.split_batch("videomae_k400.py:vit_s,runlocal", _config("videomae_k400.py:vit_s,runlocal"))[:2] == (
    4,
    1,
  )
  assert memory_plan.split_batch("videomae_k400.py:vit_b", _config("videomae_k400.py:vit_b"), devices=128)[0] == 16
  # FSDP over 8 of 64 devices: the batch still splits over all 64 (data x fsdp), the state over fsdp.
  config = _config("videomae_k400.py:vit_l", "sharding.mode=fsdp", "mesh.fsdp=8")
  per_device, _, sizes = memory_plan.split_batch("videomae_k400.py:vit_l", config)
  assert per_device == 8 and sizes == {"data": 8, "fsdp": 8, "model": 1}


def test_an_fsdp_state_is_counted_by_its_shards():
  from jvssl import sharding, trainer as trainer_lib

  config = _config("videomae_k400.py:vit_s,runlocal", "sharding.mode=fsdp")
  one = memory_plan.one_device_config(config, 4, None)
  trainer = trainer_lib.Trainer(one, sharding.make_mesh(one.mesh), 10, 10.0)
  state = trainer.abstract_state()
  per_device, whole, layout = memory_plan.state_layout(state, {"data": 2, "fsdp": 4, "model": 1})
  assert layout == "sharded over fsdp=4" and whole / 4 <= per_device < whole / 2  # Biases and norms: sharded too.
  assert memory_plan.state_layout(state, {"data": 8, "fsdp": 1, "model": 1}) == (whole, whole, "replicated")


def test_recipes_of_a_folder_with_the_model_sizes():
  folder = os.path.join(REPO, "configs")
  k400, v2 = os.path.join(folder, "videomae_k400.py"), os.path.join(folder, "videomae_v2_hybrid.py")
  specs = memory_plan.recipes(folder, ["videomae_k400", "videomae_v2_hybrid"])
  assert specs == [k400, f"{k400}:vit_s", f"{k400}:vit_l", f"{k400}:vit_h", v2]  # V2's default is ViT-g.
  assert len(memory_plan.recipes(folder, [])) > len(memory_plan.REFERENCE_DEVICES)


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--config=configs/no_such_recipe.py"], "config file not found: configs/no_such_recipe.py"),
    (["--config=configs/videomae_k400.py:vit_x"], "unknown variant 'vit_x'"),
    (["--config=configs/videomae_k400.py", "--config.model.no_such_key=1"], "unknown config key 'model.no_such_key'"),
    (["--config={tmp}/my_recipe.py"], "no device count is known for this recipe"),
    (["--config=configs/videomae_k400.py:vit_b", "--devices=3"], "does not split over 3 data-parallel devices"),
  ],
)
def test_user_errors_are_one_line(argv, message, capsys, monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)
  # A recipe of the user's own, absent from REFERENCE_DEVICES.
  shutil.copy(os.path.join(REPO, "configs", "videomae_k400.py"), tmp_path / "my_recipe.py")
  argv = [a.format(tmp=tmp_path) for a in argv]
  assert memory_plan.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("jvssl: error:") and message in err and err.count("\n") == 1, err


def test_bad_flags_are_usage_errors(capsys, monkeypatch):
  monkeypatch.chdir(REPO)
  for flag in ("--budgets=16,x", "--budgets=0", "--remat=none,some", "--per_devices=4"):
    with pytest.raises(SystemExit) as exit_info:
      memory_plan.main(["--config=configs/videomae_k400.py", flag])
    assert exit_info.value.code == 2 and "usage:" in capsys.readouterr().err
