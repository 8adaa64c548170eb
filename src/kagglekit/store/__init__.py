"""Where predictions live between training and everything after it.

- :mod:`kagglekit.store.arrays`: per-fold OOF / test probability arrays (uint8/fp16 memmaps +
  ids + manifest) for segmentation, classification and per-frame tasks.
- :mod:`kagglekit.store.records`: per-fold COCO-style result records (boxes, keypoints) for
  detection and keypoint tasks, with the same manifest-last atomic commit.
"""
