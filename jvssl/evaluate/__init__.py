"""Evaluation protocols, registered by name in `jvssl.registry.EVALUATORS`.

An evaluator has `default_config()` and `run(config, eval_config, encoder, mesh,
cache) -> {metric: value}`; `config.evals` names which run and how often.
"""

import json
import logging
import os

from jvssl import registry
from jvssl.evaluate import features, finetune, knn, linear  # noqa: F401  (register evaluators)

log = logging.getLogger("jvssl")


def run(config, encoder, mesh, *, names=None, step=None, writer=None) -> dict[str, float]:
  """Runs the evaluators `names` (default: all of config.evals) on `encoder`; returns {"name/metric": value}."""
  cache = features.FeatureCache(config, encoder, mesh)
  results = {}
  for name in names if names is not None else list(config.evals):
    cfg = config.evals[name]
    metrics = registry.EVALUATORS.get(cfg.type).run(config, cfg, encoder, mesh, cache)
    results.update({f"{name}/{k}": v for k, v in metrics.items()})
    log.info("eval %s: %s", name, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
  if writer is not None and step is not None:
    writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
  return results


def comparison_table(columns: dict[str, dict[str, float]]) -> str:
  """A markdown table: one row per metric, one column per encoder (e.g. random init, pretrained)."""
  names = list(columns)
  metrics = list(next(iter(columns.values())))
  lines = ["| evaluation | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
  for metric in metrics:
    cells = [_cell(metric, columns[n].get(metric)) for n in names]
    lines.append(f"| {metric} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _cell(metric: str, value) -> str:
  if value is None:
    return "-"
  return f"{100 * value:.1f}%" if metric.endswith("accuracy") else f"{value:.4g}"


def write_results(workdir: str, columns: dict[str, dict[str, float]]) -> str:
  """Writes results.json and results.md to workdir; returns the table."""
  table = comparison_table(columns)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(columns, f, indent=2)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(table + "\n")
  return table
