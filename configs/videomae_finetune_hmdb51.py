"""VideoMAE fine-tuning on HMDB51 (Tong et al., NeurIPS 2022): README's "UCF101 & HMDB51" row, ViT-B 62.6
top-1 without extra data, fine-tuned from VideoMAE pretrained on HMDB51 itself.

MCG-NJU/VideoMAE (commit 14ef8d8) ships no HMDB51 script (scripts/ has kinetics, ssv2 and ucf101 only) and
the paper's appendix settings could not be checked where this was written. So every value here is that of
the UCF101 script (configs/videomae_finetune_ucf101.py: scripts/ucf101/..._epoch_3200/finetune.sh), the
nearest published recipe, with --nb_classes 51: its mixup/CutMix, RandAugment, random erasing, --num_sample 2
and 5 clips x 3 crops testing included. Check the appendix's HMDB51 column before quoting a result.

Variants: `:1` (default), `:2`, `:3` (or `split=N`) pick the official split through MMAction2's list names,
hmdb51_{train,val}_split_<N>_videos.txt, read from the working directory unless
--config.data.video_folder.train_list/test_list give other paths. Add `,runlocal` for a CPU smoke run.
"""

import os

from jvssl import config as config_lib
from jvssl.config import parse_arg
from jvssl.errors import ConfigError

UCF101 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "videomae_finetune_ucf101.py")


def get_config(arg=None):
  arg = parse_arg(arg, split="1", runlocal=False)
  if arg.split not in ("1", "2", "3"):
    raise ConfigError(f"HMDB51 has splits 1, 2 and 3, not {arg.split!r}")
  c = config_lib.load(UCF101 + ":" + ("runlocal" if arg.runlocal else "1"))
  c.data.video_folder.train_list = f"hmdb51_train_split_{arg.split}_videos.txt"
  c.data.video_folder.test_list = f"hmdb51_val_split_{arg.split}_videos.txt"
  if not arg.runlocal:
    c.method.num_classes = c.data.video_folder.num_classes = 51
  return c
