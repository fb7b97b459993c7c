"""Config loading, defaults and validation.

Every field has its default here (or in the registered model, method, data source
or evaluator it belongs to); recipes in `configs/` start from `base_config()` and
change what their paper changes. Configs are ml_collections ConfigDicts so users
keep the big_vision habits: `--config=configs/x.py:arg1,arg2` and
`--config.optimizer.lr=1e-3`.
"""

import ast
import difflib
import importlib.util
import json
import os
from typing import Any, Iterable

from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import audio, augment, device, sampling, service, tokenizers
from jvssl.errors import ConfigError


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
  """Parses a recipe argument like "vit_s,runlocal" or "size=s,frames=8".

  A bare word `w` sets the boolean default `w` to True, or, if it is not a
  boolean default, is taken as the value of the first default (the variant).
  Returns a ConfigDict of `defaults` updated by `arg`.
  """
  out = ConfigDict(defaults)
  if not arg:
    return out
  first = next(iter(defaults), None)
  for word in arg.split(","):
    word = word.strip()
    if not word:
      continue
    if "=" in word:
      key, text = word.split("=", 1)
      if key not in defaults:
        raise ConfigError(f"unknown config argument '{key}'; known: {', '.join(defaults)}")
      out[key] = _convert(text, defaults[key], key)
    elif isinstance(defaults.get(word), bool):
      out[word] = True
    elif first is not None and not isinstance(defaults[first], bool):
      out[first] = _convert(word, defaults[first], first)
    else:
      raise ConfigError(f"unknown config argument '{word}'; known: {', '.join(defaults)}")
  return out


def data_defaults() -> ConfigDict:
  """The data section: fields every source shares, plus one sub-section per source."""
  data = ConfigDict()
  data.source = "synthetic"
  data.batch_size = 1024  # Global batch, over all processes and devices.
  data.num_frames = 16
  data.frame_stride = 4
  data.image_size = 224
  data.clips_per_video = 1  # Methods that contrast clips of one video set this > 1.
  data.train_split = "train"
  data.train_subset = 0  # > 0: train on the first N examples only (few-label protocols).
  data.eval_split = "test"
  data.shuffle = True
  # ImageNet statistics: what VideoMAE and most public checkpoints expect.
  data.mean = (0.485, 0.456, 0.406)
  data.std = (0.229, 0.224, 0.225)
  # "dataset": standardise with data.mean/std; "per_clip": with each clip's own per-channel mean and std over
  # its frames, which takes away a clip's colour cast and contrast (a colour constancy the model need not learn).
  data.normalize = "dataset"
  data.num_parallel_calls = -1  # -1: tf.data AUTOTUNE.
  data.prefetch_batches = 2
  data.augment = augment.default_config()
  # Clip sampling (jvssl/data/sampling.py): "random" windows of num_frames with frame_stride, or
  # "segment" (TSN: one frame from each of num_frames equal segments).
  data.sampling = "random"
  data.max_clip_distance = 0  # > 0: the clips of one video start within this many frames of the first.
  data.update(sampling.default_config())  # CVRL's interval sampling (clip_interval_power).
  # Stop with an error when more than this fraction of a batch was unreadable video (each one is skipped,
  # counted and stood in for by another video).
  data.max_bad_fraction = 0.5
  # Captions as token ids ("text"), for sources that have them (jvssl/data/tokenizers.py).
  data.text = tokenizers.default_config()
  data.text.num_captions = 1  # Captions per example: 1 gives text [L]; N > 1, [N, L] (MIL-NCE).
  # Each clip's soundtrack, given to methods as a log-mel spectrogram "audio" (jvssl/data/audio.py).
  data.audio = audio.default_config()
  # Preprocessing on tf.data service workers (jvssl/data/service.py); "" runs it in the training process.
  data.service = service.default_config()
  for name in registry.SOURCES.names():
    data[name] = registry.SOURCES.get(name).default_config()
  return data


def shrink_cnn_for_cpu(c: ConfigDict) -> None:
  """A 3D-CNN embedding recipe's `runlocal` shape: a 10-layer ResNet on 2 synthetic videos of 4 16-px frames, a
  small head, 4 float32 steps (3D convolutions are slow on the CPU)."""
  c.data.source = "synthetic"
  c.model.depth = 10
  c.data.num_frames, c.data.frame_stride, c.data.image_size, c.data.batch_size = 4, 1, 16, 2
  c.data.synthetic.video_length = 2 * c.data.num_frames
  c.method.hidden_dim, c.method.embed_dim = 64, 32
  c.train.num_steps, c.train.log_every_steps = 4, 2
  c.train.compute_dtype = "float32"


def shrink_vit_for_cpu(c: ConfigDict) -> None:
  """A ViT recipe's `runlocal` shape: a 2-layer ViT of width 64 in 2x8x8 tubelets, 4 synthetic clips of 4 32-px
  frames a step, 4 float32 steps. The method's own parts (decoder, predictor) are the recipe's to shrink."""
  c.data.source = "synthetic"
  c.data.num_frames, c.data.frame_stride, c.data.image_size = 4, 1, 32
  c.data.batch_size = 4
  c.model.patch_size = (2, 8, 8)
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 64, 2, 2, 128
  c.model.remat = "none"
  c.train.num_steps, c.train.log_every_steps = 4, 2
  c.train.compute_dtype = "float32"


def eval_config(evaluator: str, **overrides: Any) -> ConfigDict:
  """The config of one evaluator entry of `config.evals`: its defaults + `type`."""
  cfg = registry.EVALUATORS.get(evaluator).default_config()
  cfg.type = evaluator
  for key, value in overrides.items():
    if key not in cfg:
      raise ConfigError(f"unknown field '{key}' for evaluator '{evaluator}'")
    cfg[key] = value
  return cfg


def base_config(*, model: str = "vit", method: str = "videomae") -> ConfigDict:
  """All fields of a jvssl run with their defaults, for the given model and method."""
  c = ConfigDict()
  c.seed = 0

  c.model = registry.MODELS.get(model).default_config()
  c.model.name = model
  c.method = registry.METHODS.get(method).default_config()
  c.method.name = method
  c.data = data_defaults()

  c.optimizer = ConfigDict()
  c.optimizer.name = "adamw"
  c.optimizer.lr = 1e-3
  # If > 0, the learning rate is lr * batch_size / lr_base_batch_size (the
  # linear scaling rule of MAE/VideoMAE, whose lr is quoted per 256 clips).
  c.optimizer.lr_base_batch_size = 0
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.05
  # Parameters whose path contains one of these get no weight decay.
  c.optimizer.no_decay = ("bias", "norm", "pos_embed", "mask_token", "cls_token")
  c.optimizer.grad_clip_norm = 0.0  # 0: no clipping.
  c.optimizer.layer_decay = 1.0  # < 1: layer-wise lr decay (fine-tuning).

  c.schedule = ConfigDict()
  c.schedule.name = "warmup_cosine"
  c.schedule.warmup_steps = 0
  c.schedule.warmup_epochs = 0.0  # Used when warmup_steps == 0.
  c.schedule.warmup_init_lr = 0.0
  c.schedule.min_lr = 0.0
  # True: warmup_init_lr and min_lr are also multiplied by batch_size / lr_base_batch_size, as the peak lr
  # is (VideoMAE, BEiT and SlowFast scale all three); False: they are absolute (MAE, DINO).
  c.schedule.scale_with_batch = False

  c.train = ConfigDict()
  c.train.num_steps = 0  # 0: derived from num_epochs and the data set size.
  c.train.num_epochs = 1.0
  # "bfloat16" on TPU/GPU; "auto": float32 on the CPU, bfloat16 on accelerators. Never float16.
  c.train.compute_dtype = "float32"
  c.train.param_dtype = "float32"
  c.train.log_every_steps = 50
  c.train.checkpoint_every_steps = 1000
  c.train.keep_checkpoints = 3  # The newest N checkpoints are kept...
  c.train.keep_every_steps = 0  # ...and, if > 0, for good every one at a multiple of this (saved there too).
  c.train.async_checkpointing = True
  # > 1: each step sums gradients over this many micro-batches of data.batch_size / grad_accum_steps
  # clips (lax.scan), the same update as one big batch in less activation memory.
  c.train.grad_accum_steps = 1
  # Persistent XLA compilation cache, so restarts do not recompile ("" = off).
  c.train.compilation_cache_dir = ""
  # Peak dense TFLOP/s of one device for MFU; 0 = from jvssl.flops.PEAK_TFLOPS by device kind.
  c.train.peak_tflops = 0.0

  # data/fsdp/model: the mesh within one slice (ICI; one may be -1 for the rest of the slice). dcn_*: how many
  # slices each axis spans (data-centre network; their product is the number of slices). Axis size = ici x dcn.
  c.mesh = ConfigDict({"data": -1, "fsdp": 1, "model": 1, "dcn_data": 1, "dcn_fsdp": 1, "dcn_model": 1})
  c.sharding = ConfigDict()
  c.sharding.mode = "dp"  # A rule set of jvssl.sharding.RULE_SETS: dp, fsdp, tp, fsdp_tp.
  c.sharding.rules = ()  # Extra (logical axis, mesh axes) pairs that replace or add to the mode's.

  c.evals = ConfigDict()  # name -> eval_config(...): run every `every_steps` and at the end.
  c.eval = ConfigDict()
  c.eval.batch_size = 64
  # Also evaluate the encoder's random initialisation and print both side by side.
  c.eval.compare_random_init = False

  # Where a new run starts (jvssl/initialize.py); ignored once its workdir has a checkpoint of its own.
  c.init = ConfigDict()
  # A jvssl workdir, its checkpoints/ or checkpoints/<step> folder, or jvssl.tools.import_weights' --out;
  # "": random initialisation.
  c.init.checkpoint = ""
  c.init.step = -1  # -1: the latest checkpoint there (or the step the path names).
  # "encoder": the backbone only; "all": every model variable the checkpoint has (heads, decoder, statistics).
  # Either way the optimizer, the step and the random key start afresh.
  c.init.what = "encoder"
  return c


def load(spec: str, overrides: Iterable[str] = ()) -> ConfigDict:
  """Loads `path.py[:arg]` and applies `key.sub=value` overrides, then validates."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  module_spec = importlib.util.spec_from_file_location("jvssl_user_config", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path} defines no get_config(arg)")
  try:
    config = module.get_config(arg or None)
  except AttributeError as e:
    raise ConfigError(f"{path}: {_attribute_error_text(e)}") from None
  except (ConfigError, ValueError, KeyError) as e:
    # Recipes reject an unknown variant with ValueError (or fail to look it up: KeyError), as big_vision's
    # do; either way it is the argument the user gave, so one line naming recipe and argument, no traceback.
    text = f"KeyError {e}" if isinstance(e, KeyError) else str(e)
    raise ConfigError(f"{path}:{arg}: {text}") from None
  for item in overrides:
    apply_override(config, item)
  validate(config)
  return config


def apply_override(config: ConfigDict, item: str) -> None:
  """Applies one `a.b.c=value` override, converting value to the field's type."""
  if "=" not in item:
    raise ConfigError(f"config override '{item}' is not of the form key=value")
  dotted, text = item.split("=", 1)
  parent, leaf = _resolve(config, dotted)
  parent[leaf] = _convert(text, parent[leaf], dotted)


def validate(config: ConfigDict) -> None:
  """Raises ConfigError naming the first key that the defaults do not have, or whose type is wrong."""
  for key in ("model", "method"):
    if key not in config or "name" not in config[key]:
      raise ConfigError(f"config has no '{key}' section with a name")
  if "data" not in config or "source" not in config.data:
    raise ConfigError("config has no 'data' section with a source")
  reference = base_config(model=config.model.name, method=config.method.name)
  _check_section(config, reference, "", skip=("evals",))
  for name, entry in config.evals.items():
    if "type" not in entry:
      raise ConfigError(f"config.evals.{name} has no 'type' (one of {registry.EVALUATORS.names()})")
    _check_section(entry, eval_config(entry.type), f"evals.{name}.")
  registry.SOURCES.get(config.data.source)
  service.check(config.data.service)
  if config.data.normalize not in device.NORMALIZATIONS:
    raise ConfigError(f"data.normalize must be one of {list(device.NORMALIZATIONS)}, not {config.data.normalize!r}")
  if config.train.compute_dtype not in ("float32", "bfloat16", "auto"):
    raise ConfigError(
      f"train.compute_dtype must be 'float32', 'bfloat16' or 'auto', not '{config.train.compute_dtype}'"
      " (float16 overflows in VideoMAE-style training)"
    )


def to_json(config: ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
  """The fields of two configs as dicts (`to_json` parsed) that differ: "name: old -> new", in name order; a field
  that only one of them has shows as "(absent)" in the other."""
  changes = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
    if isinstance(a, dict) and isinstance(b, dict):
      changes += changed_fields(a, b, f"{prefix}{key}.")
    elif a != b:
      changes.append(f"{prefix}{key}: {a} -> {b}")
  return changes


def _check_section(section, reference, prefix: str, skip=()) -> None:
  for key, value in section.items():
    name = prefix + key
    if key in skip:
      continue
    if key not in reference:
      hint = difflib.get_close_matches(key, list(reference.keys()), n=1)
      raise ConfigError(f"unknown config key '{name}'" + (f" (did you mean '{prefix + hint[0]}'?)" if hint else ""))
    ref = reference[key]
    if isinstance(ref, ConfigDict):
      if not isinstance(value, ConfigDict):
        raise ConfigError(f"config key '{name}' must be a section, got {type(value).__name__}")
      _check_section(value, ref, name + ".")
    elif not _type_ok(value, ref):
      raise ConfigError(f"config key '{name}' must be {type(ref).__name__}, got {type(value).__name__} ({value!r})")


def _type_ok(value: Any, ref: Any) -> bool:
  if ref is None or value is None:
    return True
  if isinstance(ref, bool) or isinstance(value, bool):
    return isinstance(ref, bool) and isinstance(value, bool)
  if isinstance(ref, float):
    return isinstance(value, (int, float))
  if isinstance(ref, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(ref))


def _resolve(config: ConfigDict, dotted: str):
  parts = dotted.split(".")
  node = config
  for i, part in enumerate(parts):
    keys = list(node.keys()) if isinstance(node, (ConfigDict, dict)) else []
    if part not in keys:
      hint = difflib.get_close_matches(part, keys, n=1)
      where = ".".join(parts[: i + 1])
      raise ConfigError(f"unknown config key '{where}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    if i < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def _convert(text: str, current: Any, name: str) -> Any:
  """Converts a command-line string to the type of the field's current value."""
  try:
    if isinstance(current, bool):
      lowered = text.lower()
      if lowered not in ("true", "false", "1", "0"):
        raise ValueError(text)
      return lowered in ("true", "1")
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
    if isinstance(current, str):
      return text
    if isinstance(current, (tuple, list, ConfigDict)) or current is None:
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        if current is None:
          return text
        raise
      if isinstance(current, ConfigDict):
        if not isinstance(value, dict):
          raise ValueError(text)
        return ConfigDict(value)
      if isinstance(current, (tuple, list)) and not isinstance(value, (tuple, list)):
        value = (value,)
      return tuple(value) if isinstance(current, tuple) else value
  except (ValueError, SyntaxError):
    raise ConfigError(f"config key '{name}' must be {type(current).__name__}, cannot read '{text}'") from None
  raise ConfigError(f"config key '{name}' of type {type(current).__name__} cannot be set from the command line")


def _attribute_error_text(e: AttributeError) -> str:
  text = str(e).strip("'\"").replace("\\n", " ").replace("\n", " ").replace('\\"', '"').replace("\\'", "'")
  return f"unknown config key {text}"
