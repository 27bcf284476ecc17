"""One benchmark case for PyTorch (eager) with torchvision's DenseNet, in its own process.

Usage: python3 bench/pytorch_reference.py '<json case>'  ->  prints one JSON line.
The CIFAR models use the paper's stem (one 3x3 convolution, no norm0/pool0), as densetorch does.
"""
import json
import os
import random
import statistics
import sys
import contextlib
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
from torchvision_densenet import torchvision_densenet  # noqa: E402


def peak_rss_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024


def build(c):
    DenseNet = torchvision_densenet()
    if c['model'] == 'densenet121':
        return DenseNet(32, (6, 12, 24, 16), 64, num_classes=c['classes'], memory_efficient=c['memoryEfficient'])
    k, layers = c['growthRate'], (c['depth'] - 4) // 6
    model = DenseNet(k, (layers, layers, layers), 2 * k, bn_size=4, num_classes=c['classes'], memory_efficient=c['memoryEfficient'])
    model.features.conv0 = torch.nn.Conv2d(3, 2 * k, kernel_size=3, padding=1, bias=False)
    for name in ('norm0', 'relu0', 'pool0'):
        setattr(model.features, name, torch.nn.Identity())
    return model


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c['threads'])
    torch.manual_seed(0)
    device = torch.device(c.get('device', 'cpu'))
    model = build(c).to(device)
    shape = (c['batch'], 3, c['size'], c['size'])
    # layout 'channels_last': NHWC weights and inputs (oneDNN's preferred layout); 'nchw' otherwise.
    fmt = torch.channels_last if c.get('layout') == 'channels_last' else torch.contiguous_format
    model = model.to(memory_format=fmt)
    run = torch.compile(model) if c.get('compile') else model
    seconds = []
    # precision 'bf16' / 'fp16': autocast, as densetorch's precision option does; float16
    # training with torch.amp.GradScaler's dynamic loss scaling, as densetorch's fit
    precision = c.get('precision', 'fp32')
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == 'fp16')
    if c['mode'] == 'train':
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        # Batches start on the host, as a data loader delivers them (densetorch's fit copies each).
        x = (torch.rand(shape) - 0.5).contiguous(memory_format=fmt)
        y = torch.tensor([i % c['classes'] for i in range(c['batch'])])
        for i in range(c['warmup'] + c['steps']):
            t = time.perf_counter()
            xb, yb = x.to(device), y.to(device)
            opt.zero_grad()
            with autocast:
                out = run(xb)
            loss = torch.nn.functional.cross_entropy(out.float(), yb)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss.item()
            sync(device)
            if i >= c['warmup']:
                seconds.append(time.perf_counter() - t)
    else:
        model.eval()
        x = (torch.rand(shape) - 0.5).contiguous(memory_format=fmt).to(device)
        with torch.no_grad() if c.get('compile') else torch.inference_mode(), autocast:
            for i in range(c['warmup'] + c['steps']):
                t = time.perf_counter()
                run(x).float()
                sync(device)
                if i >= c['warmup']:
                    seconds.append(time.perf_counter() - t)
    step = statistics.median(seconds)
    result = {'stepSeconds': step, 'imagesPerSecond': c['batch'] / step, 'peakRssMiB': peak_rss_mib()}
    if device.type == 'cuda':
        result['peakCudaMiB'] = torch.cuda.max_memory_allocated() / 2 ** 20
        result['peakCudaReservedMiB'] = torch.cuda.max_memory_reserved() / 2 ** 20
    print(json.dumps(result))


if __name__ == '__main__':
    random.seed(0)
    main()
