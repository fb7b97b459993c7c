"""A method's predict function on clips the host holds (generated task videos, picture examples), not on a split of
the data source: the clips are put on the mesh batch by batch and the outputs come back to the host."""

import jax
import numpy as np
from jax.experimental import multihost_utils

from jvssl import sharding


def predict_clips(config, mesh, fn, clips: np.ndarray) -> np.ndarray:
  """fn(batch) -> [B, ...] (e.g. `FeatureCache.function`) on clips uint8 [N, T, H, W, 3] -> numpy [N, ...].

  Goes config.eval.batch_size clips at a time, the last batch padded. Every process must pass the same clips (they
  are generated from seeds), as each puts the whole batch on the mesh.
  """
  rules = sharding.rules_from_config(config)
  batch_size = config.eval.batch_size
  out = []
  with sharding.use(mesh, rules):
    for start in range(0, len(clips), batch_size):
      video = clips[start : start + batch_size]
      video = np.concatenate([video, np.zeros((batch_size - len(video),) + video.shape[1:], video.dtype)])
      batch = {"video": jax.device_put(video, sharding.batch_sharding(mesh, rules, video.ndim))}
      out.append(multihost_utils.process_allgather(fn(batch), tiled=True)[: len(clips) - start])
  return np.concatenate(out)


def predict_videos(config, mesh, fn, video: np.ndarray) -> np.ndarray:
  """`predict_clips` on whole videos uint8 [V, L, H, W, 3], L a multiple of data.num_frames, each read as its
  consecutive clips of data.num_frames frames -> numpy [V, L / data.num_frames, ...], the outputs of each clip."""
  v, length = video.shape[:2]
  t = config.data.num_frames
  out = predict_clips(config, mesh, fn, video.reshape(v * (length // t), t, *video.shape[2:]))
  return out.reshape(v, length // t, *out.shape[1:])
