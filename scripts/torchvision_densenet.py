"""Imports torchvision's DenseNet even when torchvision's compiled ops (nms, roi_align, ...) do not
load against the installed torch (a torchvision wheel built for another torch release). DenseNet
uses none of those ops, so their fake-kernel registration is skipped."""
import torch
import torch.library


def torchvision_densenet():
    try:
        from torchvision.models import DenseNet
        return DenseNet
    except RuntimeError:
        pass
    original = torch.library.register_fake
    torch.library.register_fake = lambda *args, **kwargs: (lambda fn: fn)
    try:
        import sys
        for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
            del sys.modules[name]
        from torchvision.models import DenseNet
        return DenseNet
    finally:
        torch.library.register_fake = original
