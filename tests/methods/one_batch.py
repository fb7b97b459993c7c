"""Trains methods on one fixed batch in a fresh Python: what the "every method learns" tests share.

Compiling the steps, not running them, is what such tests spend their time on, so the subprocess turns
XLA's backend optimisations off. The caller's prelude defines `config(method)`, `host_batch` (one host
batch for every method) and `extras(method, trainer, state, initial, out)`, which adds to `out` what the
test checks beyond the loss history (`initial` is the start of `state.rest`, the parameters without
gradients).
"""

import json
import textwrap

import numpy as np

from tests.conftest import run_python

_HEADER = """
import json
import jax
import numpy as np
from jvssl import config as config_lib, sharding, trainer as trainer_lib
from jvssl.data import pipeline
"""

_LOOP = """
results = {}
for method in METHODS:
  c = config(method)
  trainer = trainer_lib.Trainer(c, sharding.make_mesh(c.mesh), STEPS, 1.0)
  state = trainer.init(0)
  initial = jax.tree.map(np.asarray, state.rest)
  batch = pipeline.to_global(host_batch, trainer.mesh, trainer.rules)
  history = []
  for _ in range(STEPS):
    state, metrics = trainer.step(state, batch)
    history.append({k: float(v) for k, v in metrics.items()})
  out = {"history": history}
  extras(method, trainer, state, initial, out)
  results[method] = out
print("RESULTS" + json.dumps(results))
"""


def train(prelude: str, methods, steps: int) -> dict:
  """{method: {"history": [metrics of each step], ...extras}} after `steps` steps of each method."""
  code = _HEADER + f"METHODS, STEPS = {tuple(methods)!r}, {steps}\n" + textwrap.dedent(prelude) + _LOOP
  return json.loads(run_python(code, optimize=False).stdout.split("RESULTS", 1)[1])


def assert_falls(values):
  """Finite, and the mean of the last 5 values is below 0.9x the mean of the first 5."""
  assert np.isfinite(values).all()
  assert np.mean(values[-5:]) < 0.9 * np.mean(values[:5]), values
