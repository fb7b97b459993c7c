"""VideoMAE pretraining on Something-Something V2 (Tong et al., NeurIPS 2022), from the official scripts.

Reproduces the pretraining behind the paper's Something-Something V2 comparison with the state of the art,
as README ("Main Results") and MODEL_ZOO.md ("Something-Something V2") list it after fine-tuning with
configs/videomae_finetune_ssv2.py: ViT-S 66.8 (2400 epochs), ViT-B 69.6 (800) / 70.8 (2400) top-1,
16 frames x 2 clips x 3 crops.

It is configs/videomae_k400.py with what MCG-NJU/VideoMAE's SSv2 scripts change (commit 14ef8d8):
scripts/ssv2/videomae_vit_<size>_patch16_224_tubemasking_ratio_0.9_epoch_<epochs>/pretrain.sh, which
differ from the K400 ones only in --sampling_rate 2, --epochs and the number of nodes. The videos keep their
original 240 px height (DATASET.md); pretraining never flips (the K400 recipe does not either).

Variants: `:vit_s`, `:vit_b` (default); `epochs=2400` takes ViT-B's 2400-epoch script (800 default). README
also reports ViT-L (74.3, 16x2x3) but the repository has no ViT-L or ViT-H SSv2 script, so those variants
stop with an error rather than guess. Add `,runlocal` for a CPU smoke run on synthetic data.
"""

import os

from jvssl import config as config_lib
from jvssl.config import parse_arg
from jvssl.errors import ConfigError

K400 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "videomae_k400.py")
# (size, epochs): pretrain.sh --batch_size x GPUs. The ViT-S script's comment says 32 GPUs (4 nodes) but
# its command runs --nnodes=8 (64 GPUs); the command is what ran, so 2048.
SCRIPTS = {
  ("vit_s", 2400): 32 * 64,  # videomae_vit_small_..._epoch_2400.
  ("vit_b", 800): 32 * 64,  # videomae_vit_base_..._epoch_800 (PRETRAIN.md: "= 2048").
  ("vit_b", 2400): 32 * 64,  # videomae_vit_base_..._epoch_2400.
}
DEFAULT_EPOCHS = {"vit_s": 2400, "vit_b": 800}


def get_config(arg=None):
  arg = parse_arg(arg, variant="vit_b", epochs=0, runlocal=False)
  if arg.variant in ("vit_l", "vit_h"):
    raise ConfigError(f"MCG-NJU/VideoMAE has no SSv2 pretraining script for {arg.variant}; use vit_s or vit_b")
  if arg.variant not in DEFAULT_EPOCHS:
    raise ConfigError(f"unknown variant {arg.variant!r}; one of {', '.join(DEFAULT_EPOCHS)}")
  epochs = arg.epochs or DEFAULT_EPOCHS[arg.variant]
  if (arg.variant, epochs) not in SCRIPTS:
    known = ", ".join(str(e) for s, e in SCRIPTS if s == arg.variant)
    raise ConfigError(f"VideoMAE published no {epochs}-epoch SSv2 script for {arg.variant}; epochs= one of {known}")
  # The K400 script of the same size has the same model, decoder (depth 4), mask and optimizer.
  c = config_lib.load(f"{K400}:{arg.variant}" + (",runlocal" if arg.runlocal else ""))
  c.train.num_epochs = epochs
  if not arg.runlocal:
    c.data.frame_stride = 2  # pretrain.sh --sampling_rate 2.
    c.data.batch_size = SCRIPTS[arg.variant, epochs]
  return c
