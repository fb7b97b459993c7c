import json
import math

import numpy as np
import pytest

from jvssl.evaluate import metrics


def test_class_recall_ties_and_classes_absent_from_the_gallery():
  # Gallery: two clips tied at angle 0 (classes 0 then 1), one at 90 degrees (class 1), one at 180 (class 2).
  gallery_x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  gallery_y = np.array([0, 1, 1, 2])
  query_x = np.array([[1.0, 0.0], [0.0, -1.0], [1.0, 0.0], [1.0, 0.1]])
  # Query 0 (class 1): ranks [0, 1, 2, 3] (the tie goes to the earlier clip) -> classes 0, 1, ...: hits from k=2.
  # Query 1 (class 2): sims [0, 0, -1, 0] -> order [0, 1, 3, 2] -> classes 0, 1, 2: hits from k=3.
  # Query 2 (class 3): no clip of its class in the gallery, never hits, still counts.
  # Query 3 (class 0): its class first: hits at every k. k=5 is more than the gallery: the whole gallery.
  query_y = np.array([1, 2, 3, 0])
  want = {"recall@1": 1 / 4, "recall@2": 2 / 4, "recall@3": 3 / 4, "recall@5": 3 / 4}
  assert metrics.class_recall_at_k(query_x, query_y, gallery_x, gallery_y, ks=(1, 2, 3, 5)) == want
  assert metrics.class_recall_at_k(query_x, query_y, gallery_x, gallery_y, ks=(1, 2, 3, 5), chunk=1) == want


def test_class_recall_default_ks():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
  got = metrics.class_recall_at_k(x[:10], y[:10], x, y)
  # Every query is in the gallery: its own clip is its nearest.
  assert list(got) == ["recall@1", "recall@5", "recall@10", "recall@20", "recall@50"]
  assert all(v == 1.0 for v in got.values())


def test_video_similarity_aggregates():
  q = np.array([[1.0, 0.0], [0.0, 1.0]])
  d = np.array([[1.0, 0.0], [1.0, 1.0]])
  # Cosine similarities: [[1, 1/sqrt2], [0, 1/sqrt2]].
  assert metrics.video_similarity(q, d, "chamfer") == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
  assert metrics.video_similarity(q, d, "max") == pytest.approx(1.0)
  # Mean of q points at 45 degrees, mean of the unit d rows at 22.5 degrees.
  assert metrics.video_similarity(q, d, "mean") == pytest.approx(math.cos(math.pi / 8))
  with pytest.raises(ValueError, match="aggregate"):
    metrics.video_similarity(q, d, "median")
  sims = metrics.similarity_matrix([q, d], [q, d, d])
  assert sims.shape == (2, 3) and sims[0, 0] == pytest.approx(1.0)


def test_average_precision_and_map_with_ties_exclusions_and_candidates():
  database = ["a", "b", "c", "d", "q"]
  sims = np.array([[0.9, 0.5, 0.9, 0.1, 1.0]])
  # The query is left out of its own ranking: a, c (tied with a, after it in database order), b, d.
  # Positives in the database {a, d} ("x" is not in it): AP = (1/1 + 2/4) / 2.
  ann = metrics.NearDuplicateAnnotations(("q",), {"q": frozenset({"a", "d", "x"})})
  assert metrics.mean_average_precision(sims, ["q"], database, ann) == {"mAP": 0.75, "num_queries": 1}
  # A tie goes to the earlier video: c ranks second behind a.
  ann = metrics.NearDuplicateAnnotations(("q",), {"q": frozenset({"c"})})
  assert metrics.mean_average_precision(sims, ["q"], database, ann)["mAP"] == 0.5
  # CC_WEB_VIDEO ranks among the videos labelled for the query: a, c, d -> (1 + 2/3) / 2.
  ann = metrics.NearDuplicateAnnotations(
    ("q",), {"q": frozenset({"a", "d"})}, candidates={"q": frozenset({"a", "c", "d"})}
  )
  assert metrics.mean_average_precision(sims, ["q"], database, ann)["mAP"] == pytest.approx(5 / 6)
  # A query with no positive in the database (or no annotation) is left out of the mean.
  ann = metrics.NearDuplicateAnnotations(("q", "r"), {"q": frozenset({"a"}), "r": frozenset({"x"})})
  got = metrics.mean_average_precision(np.stack([sims[0], sims[0]]), ["q", "r"], database, ann)
  assert got == {"mAP": 1.0, "num_queries": 1}
  assert metrics.average_precision(["a", "b", "c"], {"c", "z"}) == pytest.approx(1 / 3 / 2)
  with pytest.raises(ValueError, match="no positive"):
    metrics.average_precision(["a"], set())


def test_readers(tmp_path):
  fivr = tmp_path / "annotation.json"
  fivr.write_text(json.dumps({"q1": {"ND": ["a"], "DS": ["b"], "CS": ["c"], "IS": ["d"], "DA": ["e"]}, "q2": {}}))
  dsvr = metrics.read_fivr(str(fivr))
  assert dsvr.queries == ("q1", "q2") and dsvr.positives == {"q1": {"a", "b"}, "q2": set()}
  assert dsvr.candidates is None
  assert metrics.read_fivr(str(fivr), "ISVR").positives["q1"] == {"a", "b", "c", "d"}
  with pytest.raises(ValueError, match="DSVR"):
    metrics.read_fivr(str(fivr), "XSVR")

  (tmp_path / "Seed.txt").write_text("1\tq1\n2 q2\n\n")
  (tmp_path / "GT").mkdir()
  (tmp_path / "GT" / "GT_1.rst").write_text("a E\nb X\nc -1\nd s\nq1 E\n")
  (tmp_path / "GT" / "GT_2.rst").write_text("e V\n")
  cc = metrics.read_cc_web_video(str(tmp_path / "Seed.txt"), str(tmp_path / "GT"))
  assert cc.queries == ("q1", "q2")
  assert cc.positives == {"q1": {"a", "d", "q1"}, "q2": {"e"}}
  assert cc.candidates == {"q1": {"a", "b", "d", "q1"}, "q2": {"e"}}


def test_segments_follow_ms_tcn_including_the_last_end():
  assert metrics.segments([0, 0, 1, 1, 1, 2]) == ([0, 1, 2], [0, 2, 5], [2, 5, 5])
  assert metrics.segments([0, 0, 1, 1, 1, 2], background=(0,)) == ([1, 2], [2, 5], [5, 5])
  assert metrics.segments([0, 0, 0], background=(0,)) == ([], [], [])
  assert metrics.segments([]) == ([], [], [])


def test_edit_score():
  assert metrics.edit_score([0, 0, 1, 1], [0, 1, 1, 1]) == 1.0
  # Segment sequences 0 1 0 1 and 0 1: two deletions over the longer length 4.
  assert metrics.edit_score([0, 1, 0, 1], [0, 0, 1, 1]) == 0.5
  # Only background on both sides: nothing to edit.
  assert metrics.edit_score([0, 0], [0, 0, 0][:2], background=(0,)) == 1.0
  assert metrics.edit_score([1, 1], [0, 0], background=(0,)) == 0.0


def test_f_score_counts_by_hand():
  truth = [1, 1, 1, 1, 2, 2, 2, 2]  # Segments 1: [0, 4), 2: [4, 7] (the last end is one short).
  pred = [1, 1, 2, 2, 2, 2, 2, 2]  # Segments 1: [0, 2) -> IoU 2/4; 2: [2, 7] -> IoU 3/5.
  assert metrics.f_score_counts(pred, truth, 0.5) == (2, 0, 0)
  assert metrics.f_score_counts(pred, truth, 0.55) == (1, 1, 1)
  assert metrics.f_score_counts(pred, truth, 0.75) == (0, 2, 2)
  # A true segment is hit once: the second predicted run of label 1 is a false positive; so is the run of 2.
  assert metrics.f_score_counts([1, 1, 2, 1, 1, 1], [1] * 6, 0.1) == (1, 2, 0)
  # Empty segments: no true segment (all background) makes every prediction a false positive.
  assert metrics.f_score_counts([1, 1], [0, 0], 0.1, background=(0,)) == (0, 1, 0)
  assert metrics.f_score_counts([0, 0], [0, 0], 0.1, background=(0,)) == (0, 0, 0)
  assert metrics.f_score_counts([0, 0], [1, 1], 0.1, background=(0,)) == (0, 0, 1)


def test_segmentation_metrics_sum_counts_over_videos():
  truth = [[1, 1, 1, 1, 2, 2, 2, 2], [3, 3]]
  pred = [[1, 1, 2, 2, 2, 2, 2, 2], [0, 0]]
  got = metrics.segmentation_metrics(pred, truth, background=(0,), overlaps=(0.1, 0.55))
  # Frames: 6 of 8 and 0 of 2 right. Edit: 1 and 0. At 0.1: tp 2, fp 0, fn 1 -> P 1, R 2/3 -> F1 0.8.
  # At 0.55: tp 1, fp 1, fn 2 -> P 1/2, R 1/3 -> F1 0.4.
  assert got == pytest.approx({"frame_accuracy": 0.6, "edit": 0.5, "f1@10": 0.8, "f1@55": 0.4})
  nothing = metrics.segmentation_metrics([[0, 0]], [[0, 0]], background=(0,))
  assert nothing == {"frame_accuracy": 1.0, "edit": 1.0, "f1@10": 0.0, "f1@25": 0.0, "f1@50": 0.0}
  with pytest.raises(ValueError, match="predicted frame labels"):
    metrics.segmentation_metrics([[0, 0]], [[0]])


def _ms_tcn_reference(recognized, ground_truth, overlaps):
  """MS-TCN's eval.py (github.com/yabufarha/ms-tcn), line for line with numpy's float -> float, for one video."""

  def get_labels_start_end_time(frame_wise_labels, bg_class=("background",)):
    labels, starts, ends = [], [], []
    last_label = frame_wise_labels[0]
    if frame_wise_labels[0] not in bg_class:
      labels.append(frame_wise_labels[0])
      starts.append(0)
    for i in range(len(frame_wise_labels)):
      if frame_wise_labels[i] != last_label:
        if frame_wise_labels[i] not in bg_class:
          labels.append(frame_wise_labels[i])
          starts.append(i)
        if last_label not in bg_class:
          ends.append(i)
        last_label = frame_wise_labels[i]
    if last_label not in bg_class:
      ends.append(i)
    return labels, starts, ends

  def levenstein(p, y, norm=False):
    m_row, n_col = len(p), len(y)
    D = np.zeros([m_row + 1, n_col + 1], float)
    for i in range(m_row + 1):
      D[i, 0] = i
    for i in range(n_col + 1):
      D[0, i] = i
    for j in range(1, n_col + 1):
      for i in range(1, m_row + 1):
        if y[j - 1] == p[i - 1]:
          D[i, j] = D[i - 1, j - 1]
        else:
          D[i, j] = min(D[i - 1, j] + 1, D[i, j - 1] + 1, D[i - 1, j - 1] + 1)
    return (1 - D[-1, -1] / max(m_row, n_col)) * 100 if norm else D[-1, -1]

  def f_score(recognized, ground_truth, overlap):
    p_label, p_start, p_end = get_labels_start_end_time(recognized)
    y_label, y_start, y_end = get_labels_start_end_time(ground_truth)
    tp, fp = 0, 0
    hits = np.zeros(len(y_label))
    for j in range(len(p_label)):
      intersection = np.minimum(p_end[j], y_end) - np.maximum(p_start[j], y_start)
      union = np.maximum(p_end[j], y_end) - np.minimum(p_start[j], y_start)
      with np.errstate(invalid="ignore"):
        IoU = (1.0 * intersection / union) * ([p_label[j] == y_label[x] for x in range(len(y_label))])
      idx = np.array(IoU).argmax()
      if IoU[idx] >= overlap and not hits[idx]:
        tp += 1
        hits[idx] = 1
      else:
        fp += 1
    return float(tp), float(fp), float(len(y_label) - sum(hits))

  P, _, _ = get_labels_start_end_time(recognized)
  Y, _, _ = get_labels_start_end_time(ground_truth)
  return levenstein(P, Y, True), [f_score(recognized, ground_truth, o) for o in overlaps]


def test_matches_the_ms_tcn_code_on_random_videos():
  rng = np.random.default_rng(0)
  for _ in range(40):
    n = int(rng.integers(1, 40))
    # Long runs, as real labels have, with some single frames (the end quirk's 0 / 0 case included).
    truth = np.repeat(rng.integers(0, 4, n), rng.integers(1, 6, n))
    pred = np.where(rng.random(len(truth)) < 0.2, rng.integers(0, 4, len(truth)), truth)
    edit, counts = _ms_tcn_reference(pred.tolist(), truth.tolist(), metrics.OVERLAPS)
    assert metrics.edit_score(pred, truth) == pytest.approx(edit / 100)
    for overlap, want in zip(metrics.OVERLAPS, counts):
      assert metrics.f_score_counts(pred.tolist(), truth.tolist(), overlap) == want


def test_kendalls_tau():
  forward = np.arange(4.0)[:, None]
  assert metrics.kendalls_tau([forward, forward]) == 1.0
  assert metrics.kendalls_tau([forward, forward[::-1]]) == -1.0
  # Frames 0 1 2 3 against 0 0 3 3: neighbours [0, 0, 2, 2] both ways (ties go to the first frame);
  # tau-b = 4 concordant / sqrt(6 * (6 - 2 tied pairs)).
  held = np.array([[0.0], [0.0], [3.0], [3.0]])
  assert metrics.kendalls_tau([forward, held]) == pytest.approx(4 / math.sqrt(24))
  # Every neighbour the same frame: tau undefined, the pair left out; none left is NaN.
  assert math.isnan(metrics.kendalls_tau([forward, np.zeros((3, 1))]))
  assert metrics.kendalls_tau([forward, forward, np.zeros((3, 1))]) == 1.0


def test_phase_progression():
  np.testing.assert_allclose(metrics.phase_progress([0, 0, 0, 1, 1, 2]), [0, 0.5, 1, 0, 1, 0])
  rng = np.random.default_rng(0)
  phases = [np.repeat([0, 1, 2], n) for n in (5, 7, 9, 4)]
  emb = [np.stack([metrics.phase_progress(p), rng.normal(size=len(p))], 1) for p in phases]
  assert metrics.phase_progression(emb[:2], phases[:2], emb[2:], phases[2:]) == pytest.approx(1.0, abs=1e-3)
  noise = [rng.normal(size=(len(p), 2)) for p in phases]
  assert metrics.phase_progression(noise[:2], phases[:2], noise[2:], phases[2:]) < 0.3
