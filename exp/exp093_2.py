"""exp093_2: FPN + ConvNeXt-Base, 720x960 input / 576x768 crops, CE + 0.1·depth L1, EMA 0.999,
10-view TTA, OOF at half scale (seed 003, LB 0.69475, OOF mIoU 0.7027 at T=1.0).

Starts, as the seed did, from ImageNet ConvNeXt-B: ``pretrained=convnext_base.fb_in22k_ft_in1k``
(timm's default tag, fetched once into the Hugging Face cache; offline: ``--set pretrained=<folder or
file holding its model.safetensors>``; ``--set pretrained=false`` for random init). ``--demo``
never downloads (random init); ``--resume`` continues from the fold's checkpoint whatever this says."""
from pathlib import Path

from kagglekit.cli import main
from kagglekit.tasks.segmentation.config import SegmentationConfig

CFG = SegmentationConfig(
    name=Path(__file__).stem, arch="fpn", backbone="tu-convnext_base", epochs=50, batch_size=4,
    lr=1e-4, weight_decay=1e-4, scheduler="cosine", ema_decay=0.999, n_folds=5,
    depth_aux=True, depth_loss_weight=0.1, pretrained="convnext_base.fb_in22k_ft_in1k",
)

if __name__ == "__main__":
    raise SystemExit(main(CFG))
