"""torchvision's Mask R-CNN (ResNet50-FPN, random weights) timed like the peer script
../shared/bench/torchvision_maskrcnn.py, with the forward passes under
torch.autocast("cpu", dtype=torch.bfloat16): torchvision's own mixed precision on CPU.

    tv-venv/bin/python benchmarks/torchvision_autocast.py --size 512 --threads 2 --reps 5
"""
import argparse

import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from common import timed  # benchmarks/common.py (standard library only)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--no-train", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=a.classes,
                              min_size=a.size, max_size=a.size)
    img = [torch.rand(3, a.size, a.size)]
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    m.eval()

    def infer():
        with torch.no_grad(), autocast():
            m(img)
    med, best, _ = timed(infer, a.reps)
    print(f"torchvision-bf16 infer size={a.size} median_s={med:.3f} min_s={best:.3f}")
    if a.no_train:
        return
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    boxes = torch.tensor([[50., 60., 200., 220.], [220., 100., 400., 300.]]) * a.size / 512
    masks = torch.zeros(2, a.size, a.size, dtype=torch.uint8)
    for i, b in enumerate(boxes.int()):
        masks[i, b[1]:b[3], b[0]:b[2]] = 1
    tgt = [{"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks}]

    def step():
        with autocast():
            loss = sum(m(img, tgt).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    med, best, _ = timed(step, a.reps)
    print(f"torchvision-bf16 train_step size={a.size} median_s={med:.3f} min_s={best:.3f}")


if __name__ == "__main__":
    main()
