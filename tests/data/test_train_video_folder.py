"""The K400 recipe trains from a folder of mp4s on the CPU, counting a corrupt and a zero-length file."""

import logging
import os
import sys

from jvssl import config as config_lib, train
from jvssl.data import bad_input

sys.path.insert(0, os.path.dirname(__file__))
from conftest import REPO  # noqa: E402
from videos import write_video  # noqa: E402


def test_k400_recipe_trains_from_a_folder_with_bad_files(tmp_path, caplog):
  bad_input.reset()
  videos = tmp_path / "videos"
  videos.mkdir()
  for i in range(6):
    write_video(videos / f"good_{i}.mp4", num_frames=12 + 2 * i, size=(32, 48))
  (videos / "empty.mp4").write_bytes(b"")
  (videos / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 16)
  names = ["good_0", "good_1", "empty", "good_2", "good_3", "corrupt", "good_4", "good_5"]
  (videos / "train.txt").write_text("".join(f"{n}.mp4 {i % 2}\n" for i, n in enumerate(names)))
  c = config_lib.load(
    os.path.join(REPO, "configs", "videomae_k400.py:vit_s,runlocal"),
    [
      "data.source=video_folder",
      f"data.video_folder.root={videos}",
      f"data.video_folder.train_list={videos / 'train.txt'}",
      "train.num_steps=2",
      "train.log_every_steps=1",
    ],
  )
  with caplog.at_level(logging.INFO, logger="jvssl"):
    result = train.train(c, str(tmp_path / "work"), quiet=False)
  assert int(result.state.step) == 2
  log = caplog.text
  assert "skipped/empty" in log and "skipped/unreadable" in log
  listed = (tmp_path / "work" / "bad_files.0.tsv").read_text()
  assert f"{videos / 'empty.mp4'}\tempty" in listed and f"{videos / 'corrupt.mp4'}\tunreadable" in listed
  bad_input.reset()
