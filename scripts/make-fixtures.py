"""Writes test/fixtures/: a tiny torchvision DenseNet's state dict saved by torch.save (modern key
names, and torchvision's legacy 'norm.1' names), an input batch and its eval-mode output.

Run: python3 scripts/make-fixtures.py   (needs torch and torchvision)
"""
import json
import os
from collections import OrderedDict

import torch

from torchvision_densenet import torchvision_densenet

DenseNet = torchvision_densenet()

out = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures')
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
config = dict(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, drop_rate=0, num_classes=3)
model = DenseNet(**config)
with torch.no_grad():  # non-trivial BN state, so that a wrong mapping shows in the output
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)
model.eval()
x = torch.randn(2, 3, 32, 32)
with torch.no_grad():
    y = model(x)

sd = model.state_dict()
torch.save(sd, os.path.join(out, 'tiny_densenet.pth'))
legacy = OrderedDict()
for k, v in sd.items():
    for a, b in (('norm1', 'norm.1'), ('conv1', 'conv.1'), ('norm2', 'norm.2'), ('conv2', 'conv.2')):
        if '.denselayer' in k:
            k = k.replace('.' + a + '.', '.' + b + '.')
    legacy[k] = v
torch.save(legacy, os.path.join(out, 'tiny_densenet_legacy_keys.pth'))
x.numpy().astype('<f4').tofile(os.path.join(out, 'tiny_input.f32'))
y.numpy().astype('<f4').tofile(os.path.join(out, 'tiny_output.f32'))
with open(os.path.join(out, 'tiny_densenet.json'), 'w') as f:
    json.dump({'torch': torch.__version__, 'config': {'growthRate': 4, 'blockConfig': [2, 2], 'numInitFeatures': 8,
               'bnSize': 2, 'numClasses': 3}, 'input_shape': list(x.shape), 'output_shape': list(y.shape)}, f, indent=2)
print('wrote fixtures to', os.path.abspath(out))

# Files that are not plain state dicts, for the error tests.
torch.save({'epoch': 3, 'state_dict': sd}, os.path.join(out, 'checkpoint_dict.pth'))
torch.save(model, os.path.join(out, 'full_module.pth'))
torch.save(sd, os.path.join(out, 'legacy_format.pth'), _use_new_zipfile_serialization=False)
