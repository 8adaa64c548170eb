"""10-view segmentation TTA vs one view: time ratio against 11.25 x one view (the views' summed
pixel count: 2 x (0.5² + 0.75² + 1² + 1.25² + 1.5²)) and peak memory against one view.

    python bench/bench_tta.py [--size 240 320] [--backbone tu-convnext_atto] [--repeats 3]

Each measurement runs in a fresh child process so peak RSS (CPU) or peak CUDA memory is its own.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, torch
torch.set_flush_denormal(True)
from kagglekit.tasks.segmentation.model import LossSpec, build_segmentation_model
from kagglekit.tta.segmentation import make_views, tta_probs
args = json.loads(sys.argv[1])
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
model = build_segmentation_model("fpn", args["backbone"], 3, 13, LossSpec(), False).to(dev).eval()
image = torch.randn(1, 3, *args["size"], device=dev)
views = make_views(args["scales"], args["flip"])
fwd = lambda x: model({"image": x})["logits"]
with torch.no_grad():
    tta_probs(fwd, image, views, tuple(args["size"]))  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    best = float("inf")
    for _ in range(args["repeats"]):
        t = time.perf_counter()
        tta_probs(fwd, image, views, tuple(args["size"]), temperatures=(1.0,))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": best, "peak_bytes": peak, "device": dev.type}))
"""


def measure(scales: list[float], flip: bool, args: argparse.Namespace) -> dict:
    payload = json.dumps({"scales": scales, "flip": flip, "size": args.size, "backbone": args.backbone, "repeats": args.repeats})
    out = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", nargs=2, type=int, default=[480, 640])
    p.add_argument("--backbone", default="tu-convnext_atto")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    seed_scales = [0.5, 0.75, 1.0, 1.25, 1.5]
    units = 2 * sum(s * s for s in seed_scales)
    one = measure([1.0], False, args)
    largest = measure([max(seed_scales)], False, args)
    ten = measure(seed_scales, True, args)
    ratio = ten["seconds"] / (units * one["seconds"])
    mem = ten["peak_bytes"] / one["peak_bytes"]
    mem_largest = ten["peak_bytes"] / largest["peak_bytes"]
    print(f"device={one['device']} size={args.size} backbone={args.backbone}")
    print(f"one view: {one['seconds']:.3f}s peak {one['peak_bytes'] / 2**20:.0f} MiB")
    print(f"10 views: {ten['seconds']:.3f}s peak {ten['peak_bytes'] / 2**20:.0f} MiB")
    print(f"tta_time: ratio={ratio:.3f} of {units:.2f} x one view (goal <= 1.05)")
    print(f"largest view alone (x{max(seed_scales):g}): peak {largest['peak_bytes'] / 2**20:.0f} MiB")
    print(f"tta_memory: ratio={mem:.2f} x the 1.0 view's peak, {mem_largest:.2f} x the largest view's peak "
          "(streaming accumulation: memory is that of one view, whatever the number of views)")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"bench_tta: {time.perf_counter() - t0:.0f}s")
