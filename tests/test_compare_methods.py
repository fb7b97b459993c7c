"""compare_methods trains each named method and writes one table with a random-init column."""

import json
import os

import pytest

from jvssl.tools import compare_methods


def test_one_table_for_every_method_and_the_random_init(tmp_path):
  code = compare_methods.main(
    [
      "--config=configs/ssl_synthetic.py",
      "--methods=simclr,videomae",
      "--arg=runlocal",
      f"--workdir={tmp_path}",
      "--config.train.num_steps=2",
    ]
  )
  assert code == 0
  columns = json.load(open(tmp_path / "results.json"))
  assert list(columns) == ["random init", "simclr", "videomae"]
  for metrics in columns.values():
    assert set(metrics) == {"knn/accuracy", "linear_probe/accuracy", "linear_probe/l2"}
  assert os.path.isdir(tmp_path / "simclr" / "checkpoints") and os.path.isdir(tmp_path / "videomae" / "checkpoints")
  assert "| knn/accuracy |" in (tmp_path / "results.md").read_text()


def test_unknown_argument_is_refused(capsys):
  with pytest.raises(SystemExit) as exit_info:
    compare_methods.main(["--config=configs/ssl_synthetic.py", "--methods=simclr", "--workdir=/tmp/x", "--steps=3"])
  assert exit_info.value.code == 2
  assert "--steps=3" in capsys.readouterr().err
