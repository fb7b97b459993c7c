"""Multi-view testing of imported weights reproduces PyTorch.

transformers' VideoMAEForVideoClassification (random weights, mean pooling) is saved as a .bin,
imported with `jvssl.tools.import_weights` as step 0 of a classify run, restored as that run resumes,
and tested with 2 clips x 3 crops of two short wide videos: the multiview evaluator's per-video
averages of the logits (and of the softmax) match PyTorch's over the same views within 1e-4.
"""

import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from jvssl import checkpointing, sharding
from jvssl.data import augment
from jvssl.evaluate import multiview
from jvssl.tools import import_weights
from jvssl.trainer import Trainer

from test_parity import TOL, _hf_config, _max_diff, _vit_config
from torch_refs import import_torch as _torch, randomize as _randomize

NUM_CLIPS = 2


def test_multiview_logits_of_imported_weights_match_pytorch(tmp_path):
  torch = _torch()
  transformers, hf = _hf_config(use_mean_pooling=True)
  ref = _randomize(torch, transformers.VideoMAEForVideoClassification(hf))
  torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")

  config = _vit_config("classify", "pooled", hf)
  config.data.frame_stride = 2  # 4 frames spanning 7 of a 12-frame video: the 2 clips start at frames 0 and 5.
  src, run = str(tmp_path / "pytorch_model.bin"), str(tmp_path / "run")
  lines = import_weights.import_weights("hf_videomae", src, config, run)
  assert not any(line.startswith("kept at initialisation") for line in lines), lines
  trainer = Trainer(config, sharding.make_mesh(config.mesh), 1, 1.0)
  ckpt = checkpointing.Checkpointer(run, keep=1, async_save=False)
  step, state, _ = ckpt.restore_latest(trainer.abstract_state())
  ckpt.close()
  assert step == 0

  # Wide frames, so the 3 crops (left, centre, right after the short side is resized to 32) differ.
  frames = np.random.default_rng(0).integers(0, 256, (2, 12, 40, 56, 3), dtype=np.uint8)
  views = np.stack([augment.test_views(tf.constant(f), NUM_CLIPS, config.data).numpy() for f in frames])
  assert views.shape == (2, NUM_CLIPS * 3, 4, 32, 32, 3)
  assert len({v.tobytes() for v in views[0]}) == NUM_CLIPS * 3

  with sharding.use(trainer.mesh, trainer.rules):
    logits, probs = multiview.view_average(trainer.predictor(state), config.data)(jnp.asarray(views))

  mean, std = np.array(config.data.mean, np.float32), np.array(config.data.std, np.float32)
  x = (views.reshape(-1, 4, 32, 32, 3).astype(np.float32) / 255.0 - mean) / std
  with torch.no_grad():  # transformers: [B, T, C, H, W].
    expected = ref(pixel_values=torch.from_numpy(x).permute(0, 1, 4, 2, 3)).logits.reshape(2, NUM_CLIPS * 3, -1)
  assert float(expected.std(dim=1).mean()) > 0.05  # The views disagree, so averaging them is tested.
  assert _max_diff(logits, expected.mean(1).numpy()) <= TOL
  assert _max_diff(probs, expected.softmax(-1).mean(1).numpy()) <= TOL
