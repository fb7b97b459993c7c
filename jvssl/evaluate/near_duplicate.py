"""Near-duplicate video retrieval on frozen features, with the FIVR / CC_WEB_VIDEO protocol (ViSiL, DnS).

Each video is read as consecutive clips of `data.num_frames` frames, each embedded by the method's pooled
embedding; two videos' similarity aggregates their clips' cosine similarities (`aggregate`, chamfer by default:
the mean over the query's clips of the best match). Every query ranks the database, and the mean average
precision over queries is reported (`metrics.mean_average_precision`).

`benchmark` "synthetic" (the default) builds the videos: `jvssl.data.synthetic_tasks.NearDuplicates`, copies of
each query re-timed, cropped and JPEG re-encoded, among distractors. "fivr" and "cc_web_video" read the real
benchmarks: `annotations` (FIVR-200K's annotation.json, or CC_WEB_VIDEO's Seed.txt with `ground_truth_dir` its
GT/ folder) and `video_list`, an annotation list as the video-folder source reads (one path per line, relative to
`video_root`; a video's id is its file name without extension). Each file is decoded at `fps` frames per second,
scaled so its shorter side is data.image_size and centre-cropped square, and read as up to `max_clips`
clips of data.num_frames consecutive frames spread over its length. A file that does not decode is skipped, and
counted and named in the log; the queries and positives are those of the videos that remain.
"""

import logging
import os

import numpy as np
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.data import synthetic_tasks, video_decode, video_folder
from jvssl.errors import ConfigError
from jvssl.evaluate import host_clips, metrics

log = logging.getLogger("jvssl")


def retrieval_map(query_clips, database_clips, query_ids, database_ids, positives, aggregate: str) -> float:
  """mAP of queries [Q, m, D] against database [N, n, D] (clip embeddings), positives: query id -> relevant ids."""
  annotations = metrics.NearDuplicateAnnotations(queries=tuple(query_ids), positives=positives)
  similarities = metrics.similarity_matrix(list(query_clips), list(database_clips), aggregate)
  return metrics.mean_average_precision(similarities, query_ids, database_ids, annotations)["mAP"]


def file_clips(path: str, num_frames: int, size: int, fps: float, max_clips: int) -> np.ndarray:
  """A video file -> up to max_clips clips uint8 [n, num_frames, size, size, 3] spread evenly over it (one clip,
  its last frame repeated, for a video shorter than a clip). Raises video_decode.BadVideo."""
  frames = video_decode.decode_all(path, fps=fps, short_side=size).frames
  h, w = frames.shape[1:3]
  if min(h, w) < size:
    raise video_decode.BadVideo("too_small", f"{w}x{h} frames, smaller than {size}")
  top, left = (h - size) // 2, (w - size) // 2
  frames = frames[:, top : top + size, left : left + size]
  if len(frames) < num_frames:
    frames = np.concatenate([frames, np.repeat(frames[-1:], num_frames - len(frames), axis=0)])
  starts = np.unique(np.linspace(0, len(frames) - num_frames, min(max_clips, len(frames) // num_frames) or 1))
  return np.stack([frames[int(s) : int(s) + num_frames] for s in starts])


def read_annotations(cfg) -> metrics.NearDuplicateAnnotations:
  if cfg.benchmark == "fivr":
    return metrics.read_fivr(cfg.annotations, cfg.fivr_task)
  if cfg.benchmark == "cc_web_video":
    return metrics.read_cc_web_video(cfg.annotations, cfg.ground_truth_dir)
  raise ConfigError(f"evals near_duplicate: benchmark must be synthetic, fivr or cc_web_video, not {cfg.benchmark!r}")


def real_benchmark_map(config, cfg, mesh, fn) -> dict:
  """{"mAP", "num_queries", "skipped_videos"} on the files of cfg.video_list against cfg.annotations."""
  if not cfg.annotations or not cfg.video_list:
    raise ConfigError(f"evals near_duplicate: benchmark {cfg.benchmark} needs annotations and video_list")
  annotations = read_annotations(cfg)
  data = config.data
  ids, embeddings, skipped = [], [], []
  for entry in video_folder.read_list(cfg.video_list, cfg.video_root):
    video_id = os.path.splitext(os.path.basename(entry.path))[0]
    try:
      clips = file_clips(entry.path, data.num_frames, data.image_size, cfg.fps, cfg.max_clips)
    except video_decode.BadVideo as e:
      skipped.append(video_id)
      log.warning("near_duplicate: skipped %s: %s", entry.path, " ".join(str(a) for a in e.args))
      continue
    ids.append(video_id)
    embeddings.append(host_clips.predict_clips(config, mesh, fn, clips))
  if skipped:
    log.warning("near_duplicate: %d of %d videos skipped: %s", len(skipped), len(skipped) + len(ids), skipped[:20])
  annotated = set(annotations.queries)
  queries = [i for i, q in enumerate(ids) if q in annotated]
  similarities = metrics.similarity_matrix([embeddings[i] for i in queries], embeddings, cfg.aggregate)
  scores = metrics.mean_average_precision(similarities, [ids[i] for i in queries], ids, annotations)
  log.info("near_duplicate: %d videos, %d of %d queries present", len(ids), len(queries), len(annotated))
  return {"mAP": scores["mAP"], "num_queries": scores["num_queries"], "skipped_videos": len(skipped)}


def benchmark(config, cfg) -> synthetic_tasks.NearDuplicates:
  videos = synthetic_tasks.SegmentationVideos(
    length=cfg.clips_per_video * config.data.num_frames, size=config.data.image_size, seed=cfg.seed
  )
  return synthetic_tasks.NearDuplicates(videos, copies=cfg.copies)


@registry.EVALUATORS.register("near_duplicate")
class NearDuplicate:
  @staticmethod
  def default_config() -> ConfigDict:
    return ConfigDict(
      {
        "every_steps": 0,
        "embedding": "video",
        "num_queries": 32,
        "num_distractors": 64,
        "copies": 2,  # Near-duplicates of each query in the database.
        "clips_per_video": 4,  # Video length: this many clips of data.num_frames frames.
        "aggregate": "chamfer",  # Or "mean", "max": metrics.video_similarity.
        "seed": 4321,  # The videos' own seed.
        # The real benchmarks (see the module docstring); the fields above them are the synthetic one's.
        "benchmark": "synthetic",  # Or "fivr", "cc_web_video".
        "annotations": "",
        "ground_truth_dir": "",
        "fivr_task": "DSVR",  # Or "CSVR", "ISVR".
        "video_list": "",
        "video_root": "",
        "fps": 1.0,  # Frames decoded per second of video.
        "max_clips": 32,
      }
    )

  @staticmethod
  def run(config, cfg, predictor, mesh, cache) -> dict:
    del predictor  # The embedding comes through the cache's function.
    fn = cache.function(cfg.embedding, "mean")
    if cfg.benchmark != "synthetic":
      return real_benchmark_map(config, cfg, mesh, fn)
    queries, database, query_ids, database_ids, positives = benchmark(config, cfg).build(
      cfg.num_queries, cfg.num_distractors
    )
    query_clips = host_clips.predict_videos(config, mesh, fn, queries)  # [Q, clips, D]
    database_clips = host_clips.predict_videos(config, mesh, fn, database)
    score = retrieval_map(query_clips, database_clips, query_ids, database_ids, positives, cfg.aggregate)
    return {"mAP": score}
