"""jvssl's command line: `python -m jvssl.main --config=configs/x.py[:arg] [--workdir=DIR] [--mode=train|eval]
[--config.some.field=value ...]`.

Without --workdir the run goes to workdirs/<recipe>[-<arg>] (printed first), so rerunning the
same command resumes it. On a cluster every process runs the same command (see launch/);
SLURM and TPU pods are detected, other clusters pass --coordinator_address/--num_processes/--process_id.
"""

import logging
import os
import sys

from jvssl import cli

log = logging.getLogger("jvssl")


def parse_args(argv: list[str]):
  parser = cli.parser("python -m jvssl.main", __doc__)
  parser.add_argument("--workdir", help="where checkpoints, logs and results go (default: workdirs/<recipe>)")
  parser.add_argument(
    "--mode",
    default="train",
    choices=("train", "eval"),
    help="train (and evaluate at the end), or evaluate the workdir's latest checkpoint",
  )
  parser.add_argument(
    "--evals",
    help="comma-separated tasks to evaluate instead of the config's evals: names of config.evals entries or of "
    "evaluators (with their defaults; --config.evals.NAME.field=value sets their fields)",
  )
  parser.add_argument(
    "--pictures", action="store_true", help="also draw pictures of the model into WORKDIR/pictures and TensorBoard"
  )
  parser.add_argument("--coordinator_address", help="HOST:PORT of process 0, for clusters JAX does not detect")
  parser.add_argument("--num_processes", type=int, help="number of processes in the job (with --coordinator_address)")
  parser.add_argument("--process_id", type=int, help="this process's index (with --coordinator_address)")
  return cli.parse(parser, argv)


def make_writer(workdir: str):
  import jax
  from clu import metric_writers
  from etils import epath

  if jax.process_index() != 0:
    return None
  # clu writes through tf.io.gfile, which takes gs:// paths as well as local ones.
  return metric_writers.AsyncWriter(metric_writers.SummaryWriter(str(epath.Path(workdir) / "tensorboard")))


def load_config(spec: str, overrides: list[str], evals: str | None):
  """The config, with config.evals replaced by the comma-separated `evals` if given. Overrides of evals fields
  apply after that, so they reach evaluators the recipe does not list."""
  if not evals:
    return cli.load_config(spec, overrides)
  from jvssl import config as config_lib
  from jvssl.evaluate import common

  later = [item for item in overrides if item.startswith("evals.")]
  config = cli.load_config(spec, [item for item in overrides if item not in later])
  config = common.select_evals(config, [name.strip() for name in evals.split(",") if name.strip()])
  for item in later:
    config_lib.apply_override(config, item)
  config_lib.validate(config)
  return config


def train_and_evaluate(config, workdir: str, pictures: bool = False) -> dict:
  """Trains (evaluating config.evals every `every_steps`), then evaluates the result; returns the columns."""
  from jvssl import checkpointing, train
  from jvssl.evaluate import common

  checkpointing.check_writable(workdir)
  writer = make_writer(workdir)
  result = train.train(config, workdir, writer=writer, on_eval=common.Evaluation(config, writer))
  columns = evaluate_model(config, result.trainer, result.state, workdir, writer, pictures=pictures)
  if writer is not None:
    writer.close()
  return columns


def evaluate_checkpoint(config, workdir: str, pictures: bool = False) -> dict:
  from jvssl import checkpointing, sharding, trainer as trainer_lib
  from jvssl.errors import UserError

  ckpt = checkpointing.Checkpointer(
    workdir, keep=config.train.keep_checkpoints, keep_every=config.train.keep_every_steps, async_save=False
  )
  if ckpt.latest_step() is None:
    raise UserError(f"no checkpoint in {ckpt.directory} to evaluate")
  run = trainer_lib.run_length(config)
  trainer = trainer_lib.Trainer(config, sharding.make_mesh(config.mesh), run.num_steps, run.steps_per_epoch)
  # The newest good checkpoint: a damaged newer one is moved aside and reported, as when training resumes.
  _, state, _ = ckpt.restore_latest(trainer.abstract_state())
  ckpt.close()
  # TensorBoard only for the pictures: an evaluation alone leaves the run's logs as they were.
  writer = make_writer(workdir) if pictures else None
  columns = evaluate_model(config, trainer, state, workdir, writer, pictures=pictures)
  if writer is not None:
    writer.close()
  return columns


def evaluate_model(config, trainer, state, workdir: str, writer, pictures: bool = False) -> dict:
  """config.evals on the model in `state` (and on the random initialisation if config.eval asks); prints the table.

  pictures: also draws `jvssl.evaluate.pictures` of the model in `state` into the workdir (and the writer).
  """
  from jvssl.evaluate import common

  if pictures:
    from jvssl.evaluate import pictures as pictures_lib

    pictures_lib.draw(config, trainer.predictor(state), trainer.mesh, workdir, writer=writer, step=int(state.step))
  if not config.evals:
    return {}
  columns = {}
  if config.eval.compare_random_init:
    log.info("evaluating the random initialisation")
    columns["random init"] = common.run(config, trainer.predictor(trainer.init(config.seed)), trainer.mesh)
  log.info("evaluating the trained model")
  columns[config.method.name] = common.run(
    config, trainer.predictor(state), trainer.mesh, step=int(state.step), writer=writer
  )
  table = common.write_results(workdir, columns)
  print("\n" + table + "\n", flush=True)
  return columns


def setup_jax(config) -> None:
  """Process-wide JAX settings from config.train, before anything is compiled."""
  import jax

  if config.train.compilation_cache_dir:
    # Restarts (preemption, resume) load the compiled step instead of compiling it again.
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.train.compilation_cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv: list[str] | None = None) -> int:
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  cli.setup_logging()
  from jvssl import distributed

  def run() -> None:
    workdir = args.workdir
    if workdir is None:
      workdir = cli.default_workdir(args.config)
      log.info("workdir: %s (from the recipe's name; --workdir=DIR picks another)", workdir)
    distributed.initialize(distributed.Cluster(args.coordinator_address, args.num_processes, args.process_id))
    cli.setup_logging(main_process=distributed.is_main())
    config = load_config(args.config, overrides, args.evals)
    setup_jax(config)
    if args.mode == "train":
      train_and_evaluate(config, workdir, args.pictures)
    else:
      evaluate_checkpoint(config, workdir, args.pictures)

  return cli.run(run)


if __name__ == "__main__":
  from jvssl import cpu_memory

  cpu_memory.reexec_with_tuned_malloc()
  sys.exit(main())
