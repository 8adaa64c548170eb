"""exp093_2: FPN + ConvNeXt-Base, 720x960 input / 576x768 crops, CE + 0.1·depth L1, EMA 0.999,
10-view TTA, OOF at half scale (seed 003, LB 0.69475, OOF mIoU 0.7027 at T=1.0).

The seed fine-tuned ImageNet ConvNeXt-B: ``--set pretrained=convnext_base.fb_in22k_ft_in1k`` (timm's
default tag, fetched once into the Hugging Face cache; offline: a folder or file holding its
``model.safetensors``). Not the default here: ``pretrained`` is part of the saved config, so changing
it would stop ``--resume`` of runs started without it."""
from pathlib import Path

from kagglekit.cli import main
from kagglekit.tasks.segmentation.config import SegmentationConfig

CFG = SegmentationConfig(
    name=Path(__file__).stem, arch="fpn", backbone="tu-convnext_base", epochs=50, batch_size=4,
    lr=1e-4, weight_decay=1e-4, scheduler="cosine", ema_decay=0.999, n_folds=5,
    depth_aux=True, depth_loss_weight=0.1,
)

if __name__ == "__main__":
    raise SystemExit(main(CFG))
