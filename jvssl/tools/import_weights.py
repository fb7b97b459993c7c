"""Imports PyTorch weights into a jvssl checkpoint that `jvssl.main` resumes or evaluates.

  python -m jvssl.tools.import_weights --from=videomae --src=vit_b_k400_pt.pth \
      --config=configs/videomae_k400.py --out=/tmp/run [--config.model.variant=B ...]

Formats: `videomae` (official VideoMAE / VideoMAE v2 .pth), `hf_videomae`
(transformers VideoMAE* .safetensors or .bin), `hf_vit` (transformers image ViT / ViTMAE, patch
embeddings inflated to the config's tubelets: `--inflate=average` or `central`), `clip` (transformers
CLIPModel or one of its towers: the vision tower inflated as `hf_vit` into the ViT encoder, the text tower
into a video_text method's text transformer, with the projections and logit scale; the settings it needs
are in `jvssl.models.convert`'s docstring), `torchvision` (r3d_18, r2plus1d_18, s3d, mvit_v2_s and the
other VideoResNets). The train state of the config's
method is initialised, the checkpoint's arrays replace what they map to, and the
result is saved as step 0 of `--out`: `python -m jvssl.main --config=<same>
--workdir=<out>` then trains (fine-tunes) from it, `--mode=eval` evaluates it.
Unused source keys and target arrays left at initialisation are printed and
written to `<out>/import_report.txt`.
"""

import json
import logging
import sys

from jvssl import cli

log = logging.getLogger("jvssl")


def import_weights(fmt: str, src: str, config, out: str, inflate: str = "average") -> list[str]:
  """Writes step 0 of `out` from `src`; returns the report lines."""
  import jax
  from flax import nnx

  from jvssl import checkpointing, sharding, trainer as trainer_lib
  from jvssl.config import to_json
  from jvssl.errors import ConfigError, UserError
  from jvssl.models import convert

  if fmt not in convert.FORMATS:
    raise ConfigError(f"--from must be one of {', '.join(convert.FORMATS)}, not '{fmt}'")
  checkpointing.check_writable(out)
  ckpt = checkpointing.Checkpointer(out, keep=config.train.keep_checkpoints, async_save=False)
  if ckpt.latest_step() is not None:
    ckpt.close()
    raise UserError(f"{ckpt.directory} already has checkpoints; import into an empty --out")
  source = convert.load_state_dict(src)
  # The schedule's length does not change the state's structure, so no data is needed here.
  trainer = trainer_lib.Trainer(config, sharding.make_mesh(config.mesh), 1, 1.0)
  state = trainer.init(config.seed)
  params, rest = jax.device_get(state.params), jax.device_get(state.rest)
  abstract = nnx.eval_shape(lambda: trainer.method.build(nnx.Rngs(0)))
  report = convert.convert(fmt, source, abstract, params, rest, config.model, inflate)
  shardings = trainer.state_shardings
  params = jax.device_put(params, shardings.params)
  opt_state = jax.jit(trainer.tx.init, out_shardings=shardings.opt_state)(params)
  state = state.replace(params=params, rest=jax.device_put(rest, shardings.rest), opt_state=opt_state)
  ckpt.save(
    0,
    state,
    {"step": 0, "config": json.loads(to_json(config)), "imported_from": str(checkpointing.as_path(src)), "format": fmt},
  )
  ckpt.wait()
  ckpt.close()
  lines = report.lines()
  if jax.process_index() == 0:
    report_lines = [f"imported {src} ({fmt}) into {ckpt.directory}/0", *lines]
    (checkpointing.as_path(out) / "import_report.txt").write_text("\n".join(report_lines) + "\n")
  return lines


def main(argv=None) -> int:
  cli.setup_logging()
  parser = cli.parser(
    "python -m jvssl.tools.import_weights", __doc__, config_help="the config that will train from the weights"
  )
  parser.add_argument("--from", dest="fmt", required=True, help="videomae, hf_videomae, hf_vit, clip or torchvision")
  parser.add_argument(
    "--inflate", default="average", help="hf_vit, clip: 2-D patch kernel to tubelets, 'average' or 'central' frame"
  )
  parser.add_argument("--src", required=True, help=".pth, .bin or .safetensors file")
  parser.add_argument("--out", required=True, help="workdir to create (checkpoint at step 0)")
  args, overrides = cli.parse(parser, argv)

  def work():
    for line in import_weights(args.fmt, args.src, cli.load_config(args.config, overrides), args.out, args.inflate):
      log.info("%s", line)
    log.info("wrote %s/checkpoints/0; train or evaluate with --config=%s --workdir=%s", args.out, args.config, args.out)

  return cli.run(work)


if __name__ == "__main__":
  sys.exit(main())
