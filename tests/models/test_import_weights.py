"""`python -m jvssl.tools.import_weights` writes a step-0 checkpoint that the train loop restores."""

import os

import numpy as np
import pytest

from jvssl import checkpointing, config as config_lib, sharding, trainer as trainer_lib
from jvssl.tools import import_weights

from torch_refs import import_torch, load_torchvision, randomize, state_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "videomae_synthetic.py:runlocal")


def _hf_pretraining_file(tmp_path):
  torch = import_torch()
  transformers = pytest.importorskip("transformers")
  load_torchvision()
  from safetensors.numpy import save_file

  hf = transformers.VideoMAEConfig(
    image_size=32,
    patch_size=8,
    num_frames=4,
    tubelet_size=2,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=128,
    use_mean_pooling=False,
  )
  sd = state_dict(randomize(torch, transformers.VideoMAEForPreTraining(hf)))
  path = str(tmp_path / "model.safetensors")
  save_file(sd, path)
  return path, sd


def test_import_then_restore_with_the_trainer(tmp_path):
  src, sd = _hf_pretraining_file(tmp_path)
  out = str(tmp_path / "run")
  assert import_weights.main(["--from=hf_videomae", f"--src={src}", f"--config={CONFIG}", f"--out={out}"]) == 0
  assert "imported" in open(os.path.join(out, "import_report.txt")).read()

  config = config_lib.load(CONFIG)
  trainer = trainer_lib.Trainer(config, sharding.make_mesh(config.mesh), 4, 1.0)
  ckpt = checkpointing.Checkpointer(out, keep=3, async_save=False)
  assert ckpt.latest_step() == 0
  state, meta = ckpt.restore(0, trainer.abstract_state())
  ckpt.close()
  assert meta["format"] == "hf_videomae" and int(state.step) == 0
  kernel = np.asarray(state.params["encoder"]["blocks"][0]["mlp"]["fc1"]["kernel"])
  np.testing.assert_array_equal(kernel, sd["videomae.encoder.layer.0.intermediate.dense.weight"].T)
  np.testing.assert_array_equal(np.asarray(state.params["decoder_head"]["bias"]), sd["decoder.head.bias"])
  # The restored state trains: one step of the loop's own step function.
  batch = {"video": np.zeros((8, 4, 32, 32, 3), np.uint8), "label": np.zeros((8,), np.int32)}
  state, metrics = trainer.step(state, batch)
  assert np.isfinite(float(metrics["loss"]))

  # An existing checkpoint is never overwritten.
  assert import_weights.main(["--from=hf_videomae", f"--src={src}", f"--config={CONFIG}", f"--out={out}"]) == 2


def test_mismatched_config_is_one_line_naming_the_key(tmp_path, capsys):
  src, _ = _hf_pretraining_file(tmp_path)
  code = import_weights.main(
    [
      "--from=hf_videomae",
      f"--src={src}",
      f"--config={CONFIG}",
      f"--out={tmp_path / 'run'}",
      "--config.model.mlp_dim=96",
    ]
  )
  err = capsys.readouterr().err
  assert code == 2 and "videomae.encoder.layer.0.intermediate.dense.weight" in err and "(32, 64)" in err
  assert import_weights.main(["--from=caffe", f"--src={src}", f"--config={CONFIG}", f"--out={tmp_path / 'x'}"]) == 2
  assert "--from must be one of" in capsys.readouterr().err
