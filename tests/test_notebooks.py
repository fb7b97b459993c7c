"""Notebooks stay in step with the code: their cells compile and their config cells load."""

import glob
import json
import os

import pytest

from conftest import REPO

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))


def code_cells(path):
  with open(path) as f:
    nb = json.load(f)
  for cell in nb["cells"]:
    if cell["cell_type"] == "code":
      # IPython magics and shell escapes are not Python; they are comments in Colab until run by hand.
      yield "".join(line for line in cell["source"] if not line.lstrip().startswith(("!", "%")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_cells_compile(path):
  for i, source in enumerate(code_cells(path)):
    compile(source, f"{os.path.basename(path)}[{i}]", "exec")


def test_quickstart_config_cell_loads(monkeypatch):
  monkeypatch.chdir(REPO)
  cell = next(s for s in code_cells(os.path.join(REPO, "notebooks", "quickstart.ipynb")) if "config_lib.load" in s)
  namespace: dict = {}
  exec(cell, namespace)  # Raises ConfigError if the notebook names a field that no longer exists.
  assert "finetune" not in namespace["config"].evals and namespace["config"].train.num_steps == 200
