"""Captions of the synthetic videos, written from their ground truth, and the class phrases zero-shot prompts use.

A caption names the shape and its motion in one of several paraphrases. Only what every clip of a
video shares is said: in version 2 of the set colour, size and speed are drawn afresh per clip. Each
word has synonyms and each sentence several templates, so a text tower has to learn that "circle" and
"disk", "rises" and "moves up" mean the same thing, as on captioned real video, where the same event
is described in many ways. Caption k of video i is a function of (seed, i, k).
"""

import tensorflow as tf

# Synonyms per shape, in the order of `jvssl.data.synthetic.SHAPES`; the first is the class name.
SHAPE_WORDS = (
  ("disk", "circle", "round dot"),
  ("square", "box", "block"),
  ("triangle", "wedge", "three-sided shape"),
  ("cross", "plus sign", "x shape"),
  ("ring", "hoop", "donut"),
  ("bar", "stick", "rod"),
  ("star", "five-pointed star", "spiky shape"),
  ("crescent", "moon", "sickle"),
)
# Paraphrases per motion, in the order of `jvssl.data.synthetic.MOTIONS`; the first is the class phrase.
MOTION_PHRASES = (
  ("moves right", "slides to the right", "travels rightwards"),
  ("moves left", "slides to the left", "travels leftwards"),
  ("moves down", "falls", "drops downwards"),
  ("moves up", "rises", "climbs upwards"),
  ("turns clockwise", "spins clockwise", "rotates clockwise"),
  ("turns anticlockwise", "spins counterclockwise", "rotates anticlockwise"),
  ("grows", "gets bigger", "expands"),
  ("shrinks", "gets smaller", "contracts"),
  ("moves down and right", "drifts to the lower right", "slides diagonally down to the right"),
  ("moves up and left", "drifts to the upper left", "slides diagonally up to the left"),
)
TEMPLATES = (
  "a {shape} {motion}",
  "the {shape} {motion}",
  "a video where a {shape} {motion}",
  "here a {shape} {motion}",
)


def class_phrases(label: str, num_classes: int) -> list[str]:
  """What zero-shot classification compares clips with: the first synonym of each of the first num_classes."""
  table = SHAPE_WORDS if label == "shape" else MOTION_PHRASES
  return [words[0] for words in table[:num_classes]]


def _table(rows) -> tuple[tf.Tensor, int]:
  width = max(len(r) for r in rows)
  # Rows with fewer synonyms repeat their first, so every row draws from `width` choices.
  return tf.constant([list(r) + [r[0]] * (width - len(r)) for r in rows]), width


def synthetic_captions(shape_id, motion_id, seed, num: int) -> tf.Tensor:
  """num captions of one video: tf.string [num]. shape_id, motion_id: int32 scalars; seed: int64 [2]."""
  shapes, num_shape_words = _table(SHAPE_WORDS)
  motions, num_motion_words = _table(MOTION_PHRASES)
  choices = tf.random.stateless_uniform([num, 3], seed, 0, 1 << 30, tf.int32)
  shape = tf.gather(shapes[shape_id], choices[:, 0] % num_shape_words)
  motion = tf.gather(motions[motion_id], choices[:, 1] % num_motion_words)
  # Each template split at its two slots, so that a caption is a concatenation of gathered strings.
  parts = [t.replace("{shape}", "\0").replace("{motion}", "\0").split("\0") for t in TEMPLATES]
  template = choices[:, 2] % len(TEMPLATES)
  pick = lambda i: tf.gather(tf.constant([p[i] for p in parts]), template)
  return tf.strings.join([pick(0), shape, pick(1), motion, pick(2)])
