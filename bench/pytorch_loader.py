"""PyTorch's loader on the same files as bench/data-loader.js's "loader alone" case:
torchvision's ImageFolder with RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor +
Normalize, batches of 32, DataLoader(num_workers=N). Prints one JSON line with images/s.
Usage: python3 bench/pytorch_loader.py FOLDER WORKERS"""
import json
import sys
import time

import torch
from torchvision import datasets, transforms


def main():
    folder, workers = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    data = datasets.ImageFolder(folder, tf)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, num_workers=workers)
    started = time.perf_counter()
    images = 0
    for x, _ in loader:
        images += x.shape[0]
    seconds = time.perf_counter() - started
    print(json.dumps({"files": len(data), "workers": workers, "seconds": seconds, "imagesPerSecond": images / seconds}))


if __name__ == "__main__":
    main()
