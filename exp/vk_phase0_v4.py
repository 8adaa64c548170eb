"""vk_phase0_v4 (seed 002 kill switch): arm A = v1 checkpoint fine-tuned on synthetic v4 frames +
100 real frames oversampled x8; arm B (control) = the same on the real frames only; 25 epochs,
image 480, batch 16, lr 2e-4, model selection on the real val split; both evaluated on the real test
set (OKS-mAP, OKS-mAP@50, PCK@0.05); arm A graded against v1's 0.2199 with a +2 pp margin.
Exit code: PASS 0, MARGINAL 10, FAIL 20.

    python exp/vk_phase0_v4.py --set data_dir=/data/carfusion --set init_weights=weights/v1.pt \\
        --set real_train_json=real100.json --set real_val_json=val.json --set real_test_json=test.json \\
        --set synthetic_json=phase0_v4/annotations/coco.json --set synthetic_mapping=synth24_to_carfusion14 \\
        --set sigmas=<14 values>

Without ``--set init_weights=<v1 checkpoint>`` it starts from torchvision's COCO Keypoint R-CNN
(``init_weights=COCO_V1``, cached under ``TORCH_HOME``; the keypoint head is re-initialised for K).
"""
from pathlib import Path

from kagglekit.tasks.keypoints.config import KeypointConfig
from kagglekit.tasks.keypoints.phase0 import main

CFG = KeypointConfig(name=Path(__file__).stem, epochs=25, image_size=480, batch_size=16, lr=2e-4, real_oversample=8,
                     baseline=0.2199, margin=0.02, gate_metric="test.oks_map", init_weights="COCO_V1")

if __name__ == "__main__":
    raise SystemExit(main(CFG))
