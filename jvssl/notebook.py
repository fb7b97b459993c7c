"""What a notebook does once jvssl imports: jvssl's log lines in the notebook, TensorFlow quiet, and the
checkout whose configs/ the notebook loads recipes from."""

import logging
import os

import jvssl
from jvssl import cli


def setup(clone: str) -> str:
  """Sets up logging for a notebook kernel; returns the folder holding configs/: the checkout of an
  editable install, else `clone` (the notebook's install cell clones the repository there)."""
  cli.setup_logging()  # Before TensorFlow's import: it also quiets TensorFlow's start-up messages.
  import tensorflow as tf

  # jvssl logs from inside its tf.data functions; in a kernel those lines pass through a socket that
  # TensorFlow's AutoGraph tries to convert, and it would say at length that it cannot.
  tf.autograph.set_verbosity(0)
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  for root in (os.path.dirname(os.path.dirname(jvssl.__file__)), clone):
    if os.path.isdir(os.path.join(root, "configs")):
      return os.path.abspath(root)
  raise FileNotFoundError(f"no configs/ beside the jvssl package or in {clone!r}: clone the repository there")


class Scalars:
  """What the train loop logs, kept in memory: `write_scalars(step, {name: value})` as clu's metric writers."""

  def __init__(self):
    self.rows = []

  def write_scalars(self, step, scalars):
    self.rows.append((step, dict(scalars)))
