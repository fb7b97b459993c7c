"""compare_methods trains each named method and writes one table with a random-init column."""

import json
import os
import subprocess
import sys

import pytest

from jvssl.tools import compare_methods

from conftest import REPO


def test_one_table_for_every_method_and_the_random_init(tmp_path):
  # The command as a user runs it, in a fresh Python without XLA's backend optimisations (it compiles far
  # more than it computes), with one setting of the attentive probe's sweep.
  flags = "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"
  command = [
    sys.executable,
    "-m",
    "jvssl.tools.compare_methods",
    "--config=configs/ssl_synthetic.py",
    "--methods=simclr,videomae",
    "--arg=runlocal",
    f"--workdir={tmp_path}",
    "--config.train.num_steps=2",
    "--config.evals.attentive_probe.lrs=(1e-3,)",
    "--config.evals.attentive_probe.weight_decays=(0.01,)",
  ]
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-5000:]
  columns = json.load(open(tmp_path / "results.json"))
  assert list(columns) == ["random init", "simclr", "videomae"]
  # Both labellings of the synthetic set, each by linear probe, k-NN and attentive probe.
  evaluations = {
    f"{label}/{metric}"
    for label in ("shape", "motion")
    for metric in ("knn/accuracy", "linear_probe/accuracy", "linear_probe/l2", "attentive_probe/accuracy")
  }
  for name, metrics in columns.items():
    assert evaluations <= set(metrics)
    assert ("minutes" in metrics) == (name != "random init")
  assert os.path.isdir(tmp_path / "simclr" / "checkpoints") and os.path.isdir(tmp_path / "videomae" / "checkpoints")
  assert "| shape/knn/accuracy |" in (tmp_path / "results.md").read_text()


def test_seeded_methods_give_a_mean_column_and_a_spread_table(tmp_path):
  runs = {
    "random init": [{"a/accuracy": 0.1}],
    "m": [{"a/accuracy": 0.2, "minutes": 1.0}, {"a/accuracy": 0.4, "minutes": 3.0}],
  }
  table = compare_methods.write(str(tmp_path), runs)
  assert json.load(open(tmp_path / "results.json"))["m"] == {"a/accuracy": pytest.approx(0.3), "minutes": 2.0}
  assert json.load(open(tmp_path / "seeds.json")) == {"m": runs["m"]}
  assert "| a/accuracy | 10.0% | 30.0% |" in table and "over 2 seeds" in table
  assert "| a/accuracy | 10.0% |" in table.split("over 2 seeds")[1]  # The standard deviation of m.
  assert (tmp_path / "results.md").read_text() == table + "\n"


@pytest.mark.parametrize(
  "flags, message",
  [
    (["--seeded_methods=byol"], "--seeded_methods byol are not among --methods"),
    (["--seeds=0"], "--seeds must be at least 1"),
    (["--config.data.source=tfds"], "--labels relabels the synthetic set"),
  ],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
  argv = ["--config=configs/ssl_synthetic.py", "--methods=simclr", "--arg=runlocal", f"--workdir={tmp_path}"]
  assert compare_methods.main(argv + flags) == 2
  assert message in capsys.readouterr().err


def test_unknown_argument_is_refused(capsys):
  with pytest.raises(SystemExit) as exit_info:
    compare_methods.main(["--config=configs/ssl_synthetic.py", "--methods=simclr", "--workdir=/tmp/x", "--steps=3"])
  assert exit_info.value.code == 2
  assert "--steps=3" in capsys.readouterr().err
