"""This process's record of input that could not be used: counts by reason and the files themselves.

Sources call `record_skip` when they skip a file and `record_repair` when they
used it after padding or cutting; the training loop logs `skip_counts()` and
writes `write_bad_files(path)` to the workdir.
"""

import collections
import logging
import threading

from etils import epath

log = logging.getLogger("jvssl")

_lock = threading.Lock()
_skips: collections.Counter = collections.Counter()
_repairs: collections.Counter = collections.Counter()
_bad_files: dict[str, str] = {}


def record_skip(path: str, reason: str, detail: str = "") -> None:
  with _lock:
    _skips[reason] += 1
    first = path not in _bad_files
    _bad_files[path] = reason + (f": {detail}" if detail else "")
  if first:
    log.warning("skipped %s (%s%s)", path, reason, f": {detail}" if detail else "")


def record_repair(reason: str) -> None:
  with _lock:
    _repairs[reason] += 1


def skip_counts() -> dict[str, int]:
  """Cumulative skipped examples by reason in this process, e.g. {"missing": 2, "empty": 1}."""
  with _lock:
    return dict(_skips)


def repair_counts() -> dict[str, int]:
  """Examples used after a documented repair (e.g. "short": padded with the last frame)."""
  with _lock:
    return dict(_repairs)


def write_bad_files(path) -> None:
  """Writes one `file<TAB>reason` line per bad file seen by this process to `path` (local or gs://)."""
  with _lock:
    items = sorted(_bad_files.items())
  epath.Path(path).write_text("".join(f"{name}\t{reason}\n" for name, reason in items))


def reset() -> None:
  """Forgets everything recorded (tests, or a new run in the same process)."""
  with _lock:
    _skips.clear()
    _repairs.clear()
    _bad_files.clear()
