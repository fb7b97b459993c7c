"""The attentive probe's sweep against one probe: wall time of each on a model's frozen encoder, and their metrics.

  python -m jvssl.tools.bench_probe --config=configs/videomae_synthetic.py [--workdir=DIR]
      [--eval=attentive_probe] [--compare=linear_probe,knn] [--config.evals.attentive_probe.depth=1 ...]

The model is the latest checkpoint in --workdir (a run of the same config), or its random
initialisation without one. The evaluator `--eval` of config.evals (added with the attentive_probe
defaults when the config has no such entry, so `--config.evals.attentive_probe.x=...` can set it)
runs twice, each time from scratch (its own feature cache, compilations included): with its grid's
first (lr, weight decay) only, then with the whole grid in one vmap. Printed: the time to compute the
training split's tokens once (what the probes of a run share), each run's time and metrics, and
the ratio of the two runs. --compare runs other entries of config.evals on the same model.
"""

import sys
import time

from jvssl import cli  # First: it sets TF_CPP_MIN_LOG_LEVEL before anything imports TensorFlow.


def parse_args(argv):
  p = cli.parser("python -m jvssl.tools.bench_probe", __doc__)
  p.add_argument("--workdir", default="", help="run whose latest checkpoint to probe (default: random initialisation)")
  p.add_argument("--eval", default="attentive_probe", help="entry of config.evals to time (an attentive_probe)")
  p.add_argument("--compare", default="", help="comma-separated entries of config.evals to run on the same model")
  return cli.parse(p, argv)


def load_config(spec: str, name: str, overrides: list[str]):
  """The config of `spec` with an attentive_probe entry `name` in config.evals if it has none, then `overrides`."""
  from jvssl import config as config_lib

  config = cli.load_config(spec)
  if name not in config.evals:
    with config.unlocked():
      config.evals[name] = config_lib.eval_config("attentive_probe")
  for item in overrides:
    config_lib.apply_override(config, item)
  config_lib.validate(config)
  return config


def load_model(config, workdir: str):
  """(predictor, mesh) of the latest checkpoint in workdir, or of the random initialisation if workdir is empty."""
  from jvssl import checkpointing, sharding, trainer as trainer_lib
  from jvssl.errors import UserError

  run = trainer_lib.run_length(config)
  mesh = sharding.make_mesh(config.mesh)
  trainer = trainer_lib.Trainer(config, mesh, run.num_steps, run.steps_per_epoch)
  if not workdir:
    return trainer.predictor(trainer.init(config.seed)), mesh
  ckpt = checkpointing.Checkpointer(workdir, keep=config.train.keep_checkpoints, async_save=False)
  step = ckpt.latest_step()
  if step is None:
    raise UserError(f"no checkpoint in {ckpt.directory} to probe")
  state, _ = ckpt.restore(step, trainer.abstract_state())
  ckpt.close()
  print(f"model: {workdir} step {step}")
  return trainer.predictor(state), mesh


def bench(args, overrides) -> None:
  from jvssl import registry
  from jvssl.errors import ConfigError
  from jvssl.evaluate import attentive_probe, features

  config = load_config(args.config, args.eval, overrides)
  cfg = config.evals[args.eval]
  if cfg.type != "attentive_probe":
    raise ConfigError(f"--eval={args.eval} is a {cfg.type} evaluator, not an attentive_probe")
  compare = [name for name in args.compare.split(",") if name]
  unknown = [name for name in compare if name not in config.evals]
  if unknown:
    raise ConfigError(f"--compare names {unknown}, not in config.evals ({', '.join(config.evals)})")
  predictor, mesh = load_model(config, args.workdir)
  evaluator = registry.EVALUATORS.get("attentive_probe")

  start = time.time()
  cache = features.FeatureCache(config, predictor, mesh)
  tokens = cache.sharded(cfg.train_split, cfg.embedding, "tokens", cfg.num_train).x
  tokens.block_until_ready()
  extract = time.time() - start
  print(f"tokens of the training split {tuple(tokens.shape)}: {extract:.1f} s")

  one = cfg.copy_and_resolve_references()
  one.lrs, one.weight_decays = (cfg.lrs[0],), (cfg.weight_decays[0],)
  times, results = {}, {}
  for label, run_cfg in (("1 probe", one), (f"{len(attentive_probe.settings(cfg))} probes", cfg)):
    start = time.time()
    results[label] = evaluator.run(config, run_cfg, predictor, mesh, features.FeatureCache(config, predictor, mesh))
    times[label] = time.time() - start
    print(f"{label}: {times[label]:.1f} s  {results[label]}")
  (one_label, one_time), (sweep_label, sweep_time) = times.items()
  print(f"{sweep_label} / {one_label}: {sweep_time / one_time:.2f}x")

  for name in compare:
    entry = config.evals[name]
    start = time.time()
    metrics = registry.EVALUATORS.get(entry.type).run(config, entry, predictor, mesh, cache)
    print(f"{name}: {time.time() - start:.1f} s  {metrics}")


def main(argv=None) -> int:
  args, overrides = parse_args(argv)
  cli.setup_logging()
  return cli.run(lambda: bench(args, overrides))


if __name__ == "__main__":
  sys.exit(main())
