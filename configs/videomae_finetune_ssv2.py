"""VideoMAE fine-tuning on Something-Something V2 (Tong et al., NeurIPS 2022), from the official scripts.

Reproduces the paper's Something-Something V2 comparison with the state of the art as README ("Main
Results") and MODEL_ZOO.md ("Something-Something V2") list it: top-1 ViT-S 66.8 (from 2400 pretraining
epochs), ViT-B 69.6 (800, without repeated augmentation) / 70.8 (2400), 16 frames x 2 clips x 3 crops.
Start from the matching configs/videomae_ssv2.py checkpoint.

It is configs/videomae_finetune_k400.py with what MCG-NJU/VideoMAE's SSv2 scripts change (commit 14ef8d8):
scripts/ssv2/videomae_vit_<size>_patch16_224_tubemasking_ratio_0.9_epoch_<pretrain epochs>/finetune.sh
("finetune.sh"): --data_set SSV2 --nb_classes 174, batch, lr, epochs and ViT-S's --layer_decay 0.7. For
SSV2, ssv2.py samples one frame from each of 16 equal segments (TSN; --sampling_rate is unused) and
its _aug_frame tells spatial_sampling not to flip (labels say left and right). Mixup/CutMix, RandAugment,
random erasing, repeated augmentation (--num_sample, counted as in the K400 recipe: data.batch_size is
videos x num_sample clips, lr_base_batch_size 256 x num_sample) and the init section are the K400 recipe's;
the `multiview` evaluator tests --test_num_segment 2 x --test_num_crop 3 views. Not yet a jvssl field: ssv2.py's
2 test clips take the first and the middle frame of each of the 16 segments; jvssl's augment.test_views cuts
windows of data.frame_stride frames whatever data.sampling says.

Variants: `:vit_s`, `:vit_b` (default); `pretrain_epochs=2400` takes ViT-B's script for the 2400-epoch
checkpoint (800 default). No ViT-L/H SSv2 script exists. Add `,runlocal` for a CPU smoke run.
"""

import os

from jvssl import config as config_lib
from jvssl.config import parse_arg
from jvssl.errors import ConfigError

K400 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "videomae_finetune_k400.py")
DEFAULT_PRETRAIN_EPOCHS = {"vit_s": 2400, "vit_b": 800}
# (size, pretrain epochs): finetune.sh's (--batch_size x GPUs in videos, --lr, --epochs, --layer_decay,
# --num_sample); GPUs are nodes x 8.
SCRIPTS = {
  ("vit_s", 2400): (12 * 32, 1e-3, 40, 0.7, 2),
  ("vit_b", 800): (8 * 64, 5e-4, 50, 0.75, 1),  # --layer_decay default.
  ("vit_b", 2400): (6 * 64, 5e-4, 30, 0.75, 2),  # --layer_decay default.
}


def get_config(arg=None):
  arg = parse_arg(arg, variant="vit_b", pretrain_epochs=0, runlocal=False)
  if arg.variant in ("vit_l", "vit_h"):
    raise ConfigError(f"MCG-NJU/VideoMAE has no SSv2 fine-tuning script for {arg.variant}; use vit_s or vit_b")
  if arg.variant not in DEFAULT_PRETRAIN_EPOCHS:
    raise ConfigError(f"unknown variant {arg.variant!r}; one of {', '.join(DEFAULT_PRETRAIN_EPOCHS)}")
  pretrain_epochs = arg.pretrain_epochs or DEFAULT_PRETRAIN_EPOCHS[arg.variant]
  if (arg.variant, pretrain_epochs) not in SCRIPTS:
    known = ", ".join(str(e) for s, e in SCRIPTS if s == arg.variant)
    raise ConfigError(f"no SSv2 fine-tuning script for {arg.variant} from {pretrain_epochs} epochs; one of {known}")
  videos, lr, epochs, layer_decay, num_sample = SCRIPTS[arg.variant, pretrain_epochs]
  c = config_lib.load(f"{K400}:{arg.variant}" + (",runlocal" if arg.runlocal else ""))
  c.data.sampling = "segment"
  c.data.augment.flip = False
  c.optimizer.lr = lr
  c.optimizer.layer_decay = layer_decay
  c.train.num_epochs = epochs
  c.data.augment.repeats = num_sample
  c.optimizer.lr_base_batch_size = 256 * num_sample  # lr x videos / 256.
  c.evals.multiview.num_clips = 2  # --test_num_segment 2 (--test_num_crop 3).
  if not arg.runlocal:
    c.method.num_classes = c.data.video_folder.num_classes = 174
    c.data.batch_size = videos * num_sample
    c.evals.multiview.batch_size = videos
  return c
