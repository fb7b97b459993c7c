"""Runs the evaluators a config names on what a method exposes (`Trainer.predictor`), and tabulates results.

An evaluator is a class registered in `jvssl.registry.EVALUATORS` with `default_config()`
and `run(config, eval_config, predictor, mesh, cache) -> {metric: value}`; it asks the
method's named functions for what it needs (through `cache` or `features.jit_predict`)
and raises `features.Unavailable` when the method has none, which skips it with a logged
reason. No evaluator imports the train loop: `jvssl.main` hands the loop an `Evaluation`.
"""

import json
import logging

from etils import epath
from ml_collections import ConfigDict

from jvssl import config as config_lib, registry
from jvssl.evaluate import features

log = logging.getLogger("jvssl")


def run(config, predictor, mesh, *, names=None, step=None, writer=None) -> dict[str, float]:
  """Runs the evaluators `names` (default: all of config.evals) on `predictor`; returns {"name/metric": value}."""
  cache = features.FeatureCache(config, predictor, mesh)
  results = {}
  names = names if names is not None else list(config.evals)
  for i, name in enumerate(names):
    cfg = config.evals[name]
    log.info("eval %s (%d of %d)", name, i + 1, len(names))
    try:
      metrics = registry.EVALUATORS.get(cfg.type).run(config, cfg, predictor, mesh, cache)
    except features.Unavailable as e:
      log.info("eval %s skipped: %s", name, e)
      continue
    results.update({f"{name}/{k}": v for k, v in metrics.items()})
    log.info("eval %s: %s", name, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
  if writer is not None and step is not None:
    writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
  return results


def select_evals(config, names) -> ConfigDict:
  """A copy of config whose evals are `names`: each the recipe's entry of that name if it has one,
  else the evaluator registered under that name with its defaults (ConfigError if there is none)."""
  config = config.copy_and_resolve_references()
  evals = ConfigDict()
  for name in names:
    evals[name] = config.evals[name] if name in config.evals else config_lib.eval_config(name)
  with config.unlocked():
    config.evals = evals
  return config


class Evaluation:
  """The loop's evaluation callback (`jvssl.train.EvalCallback`): config.evals on the trainer's current model."""

  def __init__(self, config, writer=None):
    self.config, self.writer = config, writer

  def __call__(self, trainer, state, names, step) -> dict:
    return run(self.config, trainer.predictor(state), trainer.mesh, names=names, step=step, writer=self.writer)


def comparison_table(columns: dict[str, dict[str, float]]) -> str:
  """A markdown table: one row per metric, one column per model (e.g. random init, pretrained)."""
  names = list(columns)
  metrics = list(dict.fromkeys(m for column in columns.values() for m in column))
  lines = ["| evaluation | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
  for metric in metrics:
    cells = [_cell(metric, columns[n].get(metric)) for n in names]
    lines.append(f"| {metric} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _cell(metric: str, value) -> str:
  if value is None:
    return "-"
  percent = metric.endswith(("accuracy", "/edit")) or "/recall@" in metric or "/f1@" in metric
  return f"{100 * value:.1f}%" if percent else f"{value:.4g}"


def write_results(workdir, columns: dict[str, dict[str, float]]) -> str:
  """Writes results.json and results.md to workdir (local or gs://); returns the table."""
  table = comparison_table(columns)
  workdir = epath.Path(workdir)
  (workdir / "results.json").write_text(json.dumps(columns, indent=2))
  (workdir / "results.md").write_text(table + "\n")
  return table
