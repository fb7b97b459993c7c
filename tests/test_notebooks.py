"""The notebooks stay in step with the code: each jupytext source (notebooks/NAME.py) matches its committed
notebooks/NAME.ipynb, which carries no outputs, and each runs top to bottom in a fresh kernel with its small
(RUNTIME = "cpu") settings. A cell that raises fails its test."""

import glob
import os

import jupytext
import nbclient
import nbformat
import pytest

from conftest import REPO

NOTEBOOKS = os.path.join(REPO, "notebooks")
SOURCES = sorted(glob.glob(os.path.join(NOTEBOOKS, "*.py")))


def _cells(notebook) -> list[tuple[str, str]]:
  return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_every_notebook_has_a_source():
  ipynbs = sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")))
  assert SOURCES and [p[: -len(".ipynb")] for p in ipynbs] == [p[: -len(".py")] for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_ipynb_matches_its_source_without_outputs(source):
  path = source[: -len(".py")] + ".ipynb"
  fix = f"run `jupytext --sync {os.path.relpath(source, REPO)}`"
  assert _cells(jupytext.read(path)) == _cells(jupytext.read(source)), f"{path} differs from its source: {fix}"
  with open(path) as f:
    notebook = nbformat.read(f, as_version=4)
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, f"{path} has outputs: clear them and {fix}"
  name = os.path.basename(path)
  assert f"colab.research.google.com/github/jvssl/jvssl/blob/main/notebooks/{name}" in notebook.cells[0].source


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  """One folder for the whole module, so 03 evaluates the checkpoint 02 wrote (alone, it trains its own)."""
  return tmp_path_factory.mktemp("notebook_workdirs")


@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(source, workdirs, tmp_path):
  notebook = jupytext.read(source)
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    JVSSL_NOTEBOOK_WORKDIR=str(workdirs),
    JVSSL_NOTEBOOK_PICTURES=str(tmp_path),
    # Compiling is most of these tiny runs' time; unoptimised LLVM code compiles 2-4x faster and runs
    # their few hundred steps a little slower.
    XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip(),
    # scikit-learn's t-SNE (03's embedding map) spins OpenMP threads that wait for seconds when the cores are
    # shared with XLA's and TensorFlow's threads or another process; one thread maps 03's clips in 0.3 s.
    OMP_NUM_THREADS="1",
  )
  # The kernel is this interpreter (jupyter_client runs the "python3" kernel with sys.executable), started in
  # notebooks/ as Jupyter starts it; execute() raises CellExecutionError, naming the cell, when a cell raises.
  client = nbclient.NotebookClient(
    notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
  )
  client.execute(env=env)
  # The figure the README shows is saved where JVSSL_NOTEBOOK_PICTURES says.
  assert [p for p in os.listdir(tmp_path) if p.endswith(".png")], f"{os.path.basename(source)} saved no picture"
