"""A TFDS builder of jvssl's own: a folder of videos + annotation lists -> a TFDS data set.

  python -m jvssl.data.tfds_builder --videos=DIR --list=train=FILE [--list=test=FILE] \
      --data_dir=DIR --name=NAME [--short_side=S] [--fps=F]
then train with --config.data.source=tfds --config.data.tfds.name=jvssl_video_folder/NAME
--config.data.tfds.data_dir=DIR. Each example is {"video": JPEG frames, "label":
int64 (-1 when the list has none), "path": the list's path}. Records keep the
list's order (no TFDS shuffling), and frames are those video_folder would read,
so the same seed gives the same clips from the folder, its TFRecords or this set.
Unreadable videos are left out and logged.
"""

import argparse
import dataclasses
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from jvssl.data import video_decode, video_folder  # noqa: E402

log = logging.getLogger("jvssl")


@dataclasses.dataclass(eq=False)
class VideoFolderConfig(tfds.core.BuilderConfig):
  root: str = ""  # Folder the lists' paths are relative to.
  lists: tuple = ()  # ((split, annotation list path), ...)
  short_side: int = 0  # > 0: frames scaled down to this short side.
  fps: float = 0.0  # > 0: frames resampled to this rate.
  timeout_s: float = 120.0  # Wall-clock limit per video.


class JvsslVideoFolder(tfds.core.GeneratorBasedBuilder):
  """Videos of a folder listed in annotation lists, as JPEG frames."""

  VERSION = tfds.core.Version("1.0.0")
  # Nothing is downloaded, so there are no checksum files beside this code to look for (and TFDS 4.9's search
  # for them in a package needs the optional importlib_resources).
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "video": tfds.features.Video(shape=(None, None, None, 3), encoding_format="jpeg"),
          "label": tfds.features.Scalar(np.int64),
          "path": tfds.features.Text(),
        }
      ),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    return {split: self._generate_examples(path) for split, path in self.builder_config.lists}

  def _generate_examples(self, list_path: str):
    cfg = self.builder_config
    for i, entry in enumerate(video_folder.read_list(list_path, cfg.root)):
      try:
        frames, _ = video_decode.read_all_frames(
          entry.path, entry.start, entry.end, cfg.fps, cfg.short_side, cfg.timeout_s
        )
      except video_decode.BadVideo as e:
        log.warning("left out %s (%s)", entry.path, e)
        continue
      yield i, {"video": frames, "label": entry.label, "path": os.path.relpath(entry.path, cfg.root)}


def prepare(
  name: str, root: str, lists: dict[str, str], data_dir: str, short_side: int = 0, fps: float = 0.0
) -> tfds.core.DatasetBuilder:
  """Builds (or finds already built) the data set jvssl_video_folder/name in data_dir; returns its builder."""
  config = VideoFolderConfig(
    name=name,
    version=JvsslVideoFolder.VERSION,
    root=root,
    lists=tuple(sorted(lists.items())),
    short_side=short_side,
    fps=fps,
  )
  builder = JvsslVideoFolder(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  return builder


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    prog="python -m jvssl.data.tfds_builder", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--videos", required=True, help="folder the lists' paths are relative to")
  p.add_argument("--list", action="append", required=True, help="SPLIT=FILE, once per split")
  p.add_argument("--data_dir", required=True, help="TFDS data dir to write to")
  p.add_argument("--name", required=True, help="config name: the data set is jvssl_video_folder/NAME")
  p.add_argument("--short_side", type=int, default=0)
  p.add_argument("--fps", type=float, default=0.0)
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  if not all("=" in item for item in args.list):
    p.error("--list takes SPLIT=FILE")
  prepare(
    args.name, args.videos, dict(item.split("=", 1) for item in args.list), args.data_dir, args.short_side, args.fps
  )
  print(
    f"read it with --config.data.source=tfds --config.data.tfds.name=jvssl_video_folder/{args.name} "
    f"--config.data.tfds.data_dir={args.data_dir}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
