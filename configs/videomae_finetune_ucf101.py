"""VideoMAE fine-tuning on UCF101 (Tong et al., NeurIPS 2022), from the official script.

Reproduces README's "UCF101 & HMDB51" row for UCF101 without extra data: ViT-B 91.3 top-1 (MODEL_ZOO.md:
91.3 / 98.5, 16 frames x 5 clips x 3 crops), fine-tuned from VideoMAE pretrained on UCF101 itself (3200
epochs, mask ratio 0.75: scripts/ucf101/..._epoch_3200/pretrain.sh, not a jvssl recipe yet).

It is configs/videomae_finetune_k400.py:vit_b with what MCG-NJU/VideoMAE's
scripts/ucf101/videomae_vit_base_patch16_224_tubemasking_ratio_0.75_epoch_3200/finetune.sh (commit 14ef8d8)
sets: 8 GPUs x --batch_size 16, --lr 5e-4, --min_lr 1e-5, --layer_decay 0.7, --epochs 100,
--drop_path 0.2, --fc_drop_rate 0.5, --use_checkpoint, --nb_classes 101, --num_sample 2 (so
data.batch_size is 16 x 8 videos x 2 clips and lr_base_batch_size 256 x 2, as the K400 recipe counts them) and
--test_num_segment 5 --test_num_crop 3 (the K400 recipe's `multiview`); mixup/CutMix, RandAugment and random
erasing are the K400 recipe's, run_class_finetuning.py's defaults.

Variants: `:1` (default), `:2`, `:3` (or `split=N`) pick the official split through MMAction2's list names,
ucf101_{train,val}_split_<N>_videos.txt (`path label`, labels from 0), read from the working directory
unless --config.data.video_folder.train_list/test_list give other paths. The script has one data path
(train.csv/val.csv): the published number is for one split. Add `,runlocal` for a CPU smoke run.
"""

import os

from jvssl import config as config_lib
from jvssl.config import parse_arg
from jvssl.errors import ConfigError

K400 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "videomae_finetune_k400.py")


def get_config(arg=None):
  arg = parse_arg(arg, split="1", runlocal=False)
  if arg.split not in ("1", "2", "3"):
    raise ConfigError(f"UCF101 has splits 1, 2 and 3, not {arg.split!r}")
  c = config_lib.load(K400 + ":vit_b" + (",runlocal" if arg.runlocal else ""))
  c.model.drop_path_rate = 0.2
  c.method.head_dropout = 0.5
  c.optimizer.lr = 5e-4
  c.optimizer.layer_decay = 0.7
  c.schedule.min_lr = 1e-5
  c.train.num_epochs = 100
  c.data.video_folder.train_list = f"ucf101_train_split_{arg.split}_videos.txt"
  c.data.video_folder.test_list = f"ucf101_val_split_{arg.split}_videos.txt"
  c.data.augment.repeats = 2  # --num_sample 2.
  c.optimizer.lr_base_batch_size = 256 * 2  # lr x videos / 256.
  if not arg.runlocal:
    c.model.remat = "full"
    c.method.num_classes = c.data.video_folder.num_classes = 101
    c.data.batch_size = 16 * 8 * 2  # 8 GPUs x --batch_size 16 videos x --num_sample 2.
    c.evals.multiview.batch_size = 16 * 8
  return c
