"""Metrics of the downstream tasks beyond classification, on numpy arrays (no JAX, no model).

* Clip retrieval by class (Xu et al. 2019, VCOP; Luo et al. 2020): `class_recall_at_k`.
* Near-duplicate video retrieval (FIVR-200K, CC_WEB_VIDEO): `video_similarity`, `mean_average_precision`,
  and the annotation readers `read_fivr`, `read_cc_web_video`.
* Temporal action segmentation, as MS-TCN's / ASFormer's `eval.py`: `segmentation_metrics`.
* Video alignment (TCC / CARL): `kendalls_tau`, `phase_progression`.

Every score is a fraction in [0, 1] (MS-TCN prints its edit score and F1 times 100).
"""

import dataclasses
import json
import os
import re
from typing import Sequence

import numpy as np
from scipy import stats

RECALL_AT = (1, 5, 10, 20, 50)
OVERLAPS = (0.1, 0.25, 0.5)


def unit(x, dtype=np.float64) -> np.ndarray:
  """x [..., D] with each row scaled to unit length (rows of zeros stay zero), as numpy `dtype`."""
  x = np.asarray(x, dtype)
  return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


# Clip retrieval by class.


def class_recall_at_k(query_x, query_y, gallery_x, gallery_y, ks=RECALL_AT, *, chunk: int = 1024) -> dict:
  """Test clips query training clips by cosine similarity; a query hits at k when any of its k nearest shares its class.

  query_x [Q, D], query_y int [Q], gallery_x [N, D], gallery_y int [N] -> {"recall@k": fraction of queries that hit}.
  Ties in similarity are broken by gallery order (the earlier clip ranks first), so the result is the same on every
  run. A query whose class has no clip in the gallery never hits and still counts. k > N means the whole gallery.
  """
  gallery = unit(gallery_x)
  query_y, gallery_y = np.asarray(query_y), np.asarray(gallery_y)
  top = min(max(ks), len(gallery))
  hits = []
  for start in range(0, len(query_y), chunk):
    sims = unit(query_x[start : start + chunk]) @ gallery.T  # [c, N]
    order = np.argsort(-sims, axis=1, kind="stable")[:, :top]
    same = gallery_y[order] == query_y[start : start + chunk, None]  # [c, top]
    hits.append(np.cumsum(same, axis=1) > 0)
  hits = np.concatenate(hits)
  return {f"recall@{k}": float(hits[:, min(k, top) - 1].mean()) for k in ks}


# Near-duplicate video retrieval.


def video_similarity(query_clips, database_clips, aggregate: str = "chamfer") -> float:
  """The similarity of two videos from their clips' embeddings, query_clips [m, D] and database_clips [n, D].

  "chamfer": the mean over query clips of the best cosine similarity to a database clip (ViSiL's and DnS's
  video-level similarity). "mean": the cosine similarity of the two videos' mean clip embeddings.
  "max": the best cosine similarity of any pair of clips.
  """
  q, d = unit(query_clips), unit(database_clips)
  if aggregate == "mean":
    return float(unit(q.mean(0)) @ unit(d.mean(0)))
  sims = q @ d.T
  if aggregate == "chamfer":
    return float(sims.max(axis=1).mean())
  if aggregate == "max":
    return float(sims.max())
  raise ValueError(f"aggregate must be 'chamfer', 'mean' or 'max', not {aggregate!r}")


def similarity_matrix(queries: Sequence, database: Sequence, aggregate: str = "chamfer") -> np.ndarray:
  """queries: Q arrays [m_i, D] of clip embeddings; database: N arrays [n_j, D] -> video similarities [Q, N]."""
  return np.array([[video_similarity(q, d, aggregate) for d in database] for q in queries]).reshape(
    len(queries), len(database)
  )


def average_precision(ranked: Sequence[str], positives: set) -> float:
  """AP of one query's ranking, as FIVR's and ViSiL's evaluation: the mean over positives of precision at each one.

  ranked: database ids best first (the query itself and any excluded video left out); positives: the relevant ids
  that are in the database. A positive that is not in `ranked` is never found and lowers the AP.
  """
  if not positives:
    raise ValueError("a query with no positive in the database has no AP; leave it out")
  found, total = 0, 0.0
  for rank, video in enumerate(ranked, start=1):
    if video in positives:
      found += 1
      total += found / rank
  return total / len(positives)


@dataclasses.dataclass(frozen=True)
class NearDuplicateAnnotations:
  """Queries and what is relevant to each, from either benchmark's files.

  positives: query id -> ids of its relevant videos. candidates: query id -> the only ids ranked for it
  (CC_WEB_VIDEO ranks a query among the videos labelled for it), or None: the whole database (FIVR).
  """

  queries: tuple[str, ...]
  positives: dict[str, frozenset]
  candidates: dict[str, frozenset] | None = None


def mean_average_precision(
  similarities, query_ids: Sequence[str], database_ids: Sequence[str], annotations: NearDuplicateAnnotations
) -> dict:
  """similarities [Q, N] of `query_ids` against `database_ids` -> {"mAP", "num_queries"}.

  Each query ranks the database by similarity, best first (ties in database order, as Python's stable sort in
  the reference code), without itself and, with CC_WEB_VIDEO's candidates, only among those. Its positives are
  those in the database; queries with none (or not annotated) are left out, and `num_queries` counts the rest.
  """
  similarities = np.asarray(similarities)
  in_database = set(database_ids)
  aps = []
  for row, query in zip(similarities, query_ids):
    positives = set(annotations.positives.get(query, ())) & in_database
    if not positives:
      continue
    allowed = None if annotations.candidates is None else annotations.candidates.get(query, frozenset())
    order = np.argsort(-row, kind="stable")
    ranked = [
      database_ids[j] for j in order if database_ids[j] != query and (allowed is None or database_ids[j] in allowed)
    ]
    aps.append(average_precision(ranked, positives))
  return {"mAP": float(np.mean(aps)) if aps else 0.0, "num_queries": len(aps)}


# FIVR-200K's relevance labels that count as positive in each of its three tasks.
FIVR_TASKS = {"DSVR": ("ND", "DS"), "CSVR": ("ND", "DS", "CS"), "ISVR": ("ND", "DS", "CS", "IS")}
CC_WEB_POSITIVE = "ESVML"  # Exact, similar, different version, major change, long version; not X (dissimilar).


def read_fivr(annotation_json: str, task: str = "DSVR") -> NearDuplicateAnnotations:
  """FIVR-200K's annotation.json ({query id: {label: [video ids]}}) -> the queries and positives of `task`."""
  if task not in FIVR_TASKS:
    raise ValueError(f"FIVR task must be one of {', '.join(FIVR_TASKS)}, not {task!r}")
  with open(annotation_json) as f:
    table = json.load(f)
  positives = {
    query: frozenset(v for label in FIVR_TASKS[task] for v in labels.get(label, ())) for query, labels in table.items()
  }
  return NearDuplicateAnnotations(tuple(table), positives)


def read_cc_web_video(seed_file: str, ground_truth_dir: str, positive: str = CC_WEB_POSITIVE):
  """CC_WEB_VIDEO's Seed.txt ("<query set> <seed video id>" per line) and GT/GT_<query set>.rst
  ("<video id> <label>" per line, labels E S V M L X, -1 for a missing video) -> the 24 seed queries,
  their positives and the videos labelled for each (the ranking is among those)."""
  queries, positives, candidates = [], {}, {}
  with open(seed_file) as f:
    for line in f:
      fields = line.split()
      if len(fields) < 2:
        continue
      query_set, query = fields[0], fields[1]
      labels = {}
      with open(os.path.join(ground_truth_dir, f"GT_{query_set}.rst")) as gt:
        for row in gt:
          parts = re.split(r"\s+", row.strip())
          if len(parts) >= 2 and parts[1] != "-1":
            labels[parts[0]] = parts[1].upper()
      queries.append(query)
      positives[query] = frozenset(v for v, label in labels.items() if label in positive)
      candidates[query] = frozenset(labels)
  return NearDuplicateAnnotations(tuple(queries), positives, candidates)


# Temporal action segmentation.


def segments(frame_labels, background: Sequence = ()) -> tuple[list, list, list]:
  """MS-TCN's get_labels_start_end_time: the runs of equal labels, without background -> (labels, starts, ends).

  As in the reference, a run's end is the index of the next run's first frame, except the last run's, which is the
  index of the video's last frame (one short). A video of no frames has no segments.
  """
  labels, starts, ends = [], [], []
  frame_labels = list(frame_labels)
  if not frame_labels:
    return labels, starts, ends
  last = frame_labels[0]
  if last not in background:
    labels.append(last)
    starts.append(0)
  for i, label in enumerate(frame_labels):
    if label != last:
      if label not in background:
        labels.append(label)
        starts.append(i)
      if last not in background:
        ends.append(i)
      last = label
  if last not in background:
    ends.append(len(frame_labels) - 1)
  return labels, starts, ends


def levenshtein(p: Sequence, y: Sequence) -> int:
  """The edit distance between two sequences of segment labels."""
  d = np.zeros((len(p) + 1, len(y) + 1), np.int64)
  d[:, 0] = np.arange(len(p) + 1)
  d[0, :] = np.arange(len(y) + 1)
  for j in range(1, len(y) + 1):
    for i in range(1, len(p) + 1):
      if y[j - 1] == p[i - 1]:
        d[i, j] = d[i - 1, j - 1]
      else:
        d[i, j] = min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1]) + 1
  return int(d[-1, -1])


def edit_score(predicted, truth, background: Sequence = ()) -> float:
  """1 - (edit distance of the segment label sequences) / (the longer one's length), in [0, 1].

  Two videos with no segments at all (all background) score 1; MS-TCN's code divides 0 by 0 there.
  """
  p, y = segments(predicted, background)[0], segments(truth, background)[0]
  if not p and not y:
    return 1.0
  return 1.0 - levenshtein(p, y) / max(len(p), len(y))


def f_score_counts(predicted, truth, overlap: float, background: Sequence = ()) -> tuple[int, int, int]:
  """MS-TCN's f_score: (true positives, false positives, false negatives) of the predicted segments at IoU `overlap`.

  Each predicted segment, in order, takes the true segment of its label with the highest IoU (the first of equal
  ones); a hit when that IoU >= overlap and the true segment was not taken already, else a false positive. With no
  true segment every predicted one is a false positive (the reference's argmax fails there).
  """
  p_label, p_start, p_end = segments(predicted, background)
  y_label, y_start, y_end = (np.asarray(a) for a in segments(truth, background))
  hits = np.zeros(len(y_label), bool)
  tp = fp = 0
  for label, start, end in zip(p_label, p_start, p_end):
    if not len(y_label):
      fp += 1
      continue
    intersection = np.minimum(end, y_end) - np.maximum(start, y_start)
    union = np.maximum(end, y_end) - np.minimum(start, y_start)
    # 0 / 0 (a last segment of one frame against itself, from the end quirk) is NaN as in the reference: argmax
    # picks it and NaN >= overlap is false, so that segment is a false positive.
    with np.errstate(invalid="ignore"):
      iou = intersection / union * (y_label == label)
    best = int(np.argmax(iou))
    if iou[best] >= overlap and not hits[best]:
      tp += 1
      hits[best] = True
    else:
      fp += 1
  return tp, fp, int(len(y_label) - hits.sum())


def segmentation_metrics(predicted: Sequence, truth: Sequence, background: Sequence = (), overlaps=OVERLAPS) -> dict:
  """Per-frame labels of each video, predicted and true (lists of int [T_i]) -> MS-TCN's metrics, as fractions.

  "frame_accuracy": correct frames / all frames (background frames included, as the reference); "edit": the
  mean of the videos' edit scores; "f1@{10,25,50}": F1 of the true and false positives and negatives summed
  over videos (0 when there are no hits).
  """
  if len(predicted) != len(truth):
    raise ValueError(f"{len(predicted)} predicted videos for {len(truth)} true ones")
  correct = total = 0
  edits = []
  counts = np.zeros((len(overlaps), 3))
  for p, y in zip(predicted, truth):
    p, y = np.asarray(p), np.asarray(y)
    if p.shape != y.shape:
      raise ValueError(f"a video has {p.shape} predicted frame labels for {y.shape} true ones")
    correct += int((p == y).sum())
    total += len(y)
    edits.append(edit_score(p.tolist(), y.tolist(), background))
    for k, overlap in enumerate(overlaps):
      counts[k] += f_score_counts(p.tolist(), y.tolist(), overlap, background)
  out = {"frame_accuracy": correct / max(total, 1), "edit": float(np.mean(edits)) if edits else 0.0}
  for overlap, (tp, fp, fn) in zip(overlaps, counts):
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out[f"f1@{round(100 * overlap)}"] = (
      float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0
    )
  return out


# Video alignment.


def kendalls_tau(embeddings: Sequence, stride: int = 1, distance: str = "sqeuclidean") -> float:
  """TCC's alignment score: every ordered pair of videos (i, j), each of i's frames (every `stride`-th) takes its
  nearest frame of j; Kendall's tau-b between the frame order and the neighbours' order, averaged over pairs.

  embeddings: per-frame embeddings of each video [T_i, D]. Pairs whose tau is undefined (all neighbours the same
  frame) are left out, as TCC does; NaN if every pair is.
  """
  from scipy.spatial.distance import cdist

  taus = []
  for i, query in enumerate(embeddings):
    for j, candidate in enumerate(embeddings):
      if i == j:
        continue
      nearest = np.argmin(cdist(query[::stride], candidate[::stride], distance), axis=1)
      if len(nearest) > 1 and len(set(nearest.tolist())) > 1:
        taus.append(stats.kendalltau(np.arange(len(nearest)), nearest).statistic)
  return float(np.mean(taus)) if taus else float("nan")


def phase_progress(phase_labels) -> np.ndarray:
  """Per-frame phase labels [T] -> how far each frame is through its phase [T], 0 at a phase's first frame and
  1 at its last (0 for a phase of one frame)."""
  labels = np.asarray(phase_labels)
  progress = np.zeros(len(labels))
  _, starts, _ = segments(labels.tolist())
  bounds = starts + [len(labels)]
  for start, end in zip(bounds[:-1], bounds[1:]):
    if end - start > 1:
      progress[start:end] = np.arange(end - start) / (end - start - 1)
  return progress


def phase_progression(train_x, train_phases, test_x, test_phases) -> float:
  """R^2 on the test videos of a linear regression from frame embeddings to `phase_progress` (TCC's phase
  progression, with progress measured within each labelled phase). *_x: lists of [T_i, D]; *_phases: lists of
  int [T_i]."""
  from sklearn.linear_model import Ridge

  target = lambda phases: np.concatenate([phase_progress(p) for p in phases])
  model = Ridge(alpha=1e-3).fit(np.concatenate(train_x), target(train_phases))
  return float(model.score(np.concatenate(test_x), target(test_phases)))


# Transition-point localisation.


def transition_frames(frame_labels) -> np.ndarray:
  """The frames where a new label starts (not frame 0): int [K]."""
  labels = np.asarray(frame_labels)
  return np.flatnonzero(labels[1:] != labels[:-1]) + 1


def transition_scores(boundary_scores, boundary_frames, truth, tolerance: int) -> tuple[int, int]:
  """One video's candidate boundaries, scored (higher: more likely a transition), against its true transitions.

  boundary_scores [B], boundary_frames int [B] (the frame each candidate would start), truth int [K]. The K
  best-scoring candidates (ties to the earlier) are matched one to one, greedily best first, to true transitions
  within `tolerance` frames. Returns (matched, K): precision and recall at K are both matched / K.
  """
  unmatched = [int(t) for t in np.asarray(truth)]
  k = len(unmatched)
  order = np.argsort(-np.asarray(boundary_scores), kind="stable")[:k]
  for frame in np.asarray(boundary_frames)[order]:
    near = [t for t in unmatched if abs(t - int(frame)) <= tolerance]
    if near:
      unmatched.remove(min(near, key=lambda t: abs(t - int(frame))))
  return k - len(unmatched), k


# Video object segmentation (DAVIS's region and boundary measures).


def jaccard(predicted, truth) -> float:
  """Region similarity J: intersection over union of two boolean masks; 1 when both are empty (DAVIS)."""
  predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
  union = np.logical_or(predicted, truth).sum()
  return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def _boundary(mask: np.ndarray) -> np.ndarray:
  """The mask's pixels that touch a pixel outside it (4-neighbourhood; the image border counts as outside)."""
  padded = np.pad(mask, 1)
  inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
  return mask & ~inner


def boundary_f(predicted, truth, tolerance: int | None = None) -> float:
  """Contour accuracy F (DAVIS): the F-measure of the two masks' boundary pixels, a pixel matching when the other
  boundary passes within `tolerance` pixels (default DAVIS's ceil(0.008 x image diagonal)). 1 when both masks
  are empty, 0 when only one is."""
  from scipy import ndimage

  predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
  if tolerance is None:
    tolerance = int(np.ceil(0.008 * np.hypot(*truth.shape)))
  pb, tb = _boundary(predicted), _boundary(truth)
  if not pb.any() and not tb.any():
    return 1.0
  if not pb.any() or not tb.any():
    return 0.0
  disk = np.hypot(*np.mgrid[-tolerance : tolerance + 1, -tolerance : tolerance + 1]) <= tolerance
  precision = (pb & ndimage.binary_dilation(tb, disk)).sum() / pb.sum()
  recall = (tb & ndimage.binary_dilation(pb, disk)).sum() / tb.sum()
  return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))
