"""PyTorch definitions the Keras backbones mirror, written here from the published model
descriptions (3D-ResNets-PyTorch `resnet.py` / `resnet2p1d.py`, Kyle Min's S3D, piergiaj's
and hassony2's I3D, with their state-dict key names), for parameter-count and parity tests.
Needs torch; imported only by tests that have it.
"""

import math

import torch
from torch import nn


def _conv(cin, cout, kernel, stride=1, padding=0):
    return nn.Conv3d(cin, cout, kernel_size=kernel, stride=stride, padding=padding, bias=False)


def _mid(cin, cout):
    return (cin * cout * 27) // (cin * 9 + 3 * cout)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None, factorised=False):
        super().__init__()
        self.factorised = factorised
        if factorised:
            m1, m2 = _mid(cin, planes), _mid(planes, planes)
            self.conv1_s = _conv(cin, m1, (1, 3, 3), (1, stride, stride), (0, 1, 1))
            self.bn1_s = nn.BatchNorm3d(m1)
            self.conv1_t = _conv(m1, planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0))
            self.bn1_t = nn.BatchNorm3d(planes)
            self.conv2_s = _conv(planes, m2, (1, 3, 3), 1, (0, 1, 1))
            self.bn2_s = nn.BatchNorm3d(m2)
            self.conv2_t = _conv(m2, planes, (3, 1, 1), 1, (1, 0, 0))
            self.bn2_t = nn.BatchNorm3d(planes)
        else:
            self.conv1 = _conv(cin, planes, 3, stride, 1)
            self.bn1 = nn.BatchNorm3d(planes)
            self.conv2 = _conv(planes, planes, 3, 1, 1)
            self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        r = self.relu
        if self.factorised:
            out = r(self.bn1_t(self.conv1_t(r(self.bn1_s(self.conv1_s(x))))))
            out = self.bn2_t(self.conv2_t(r(self.bn2_s(self.conv2_s(out)))))
        else:
            out = self.bn2(self.conv2(r(self.bn1(self.conv1(x)))))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return r(out + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None, factorised=False):
        super().__init__()
        self.factorised = factorised
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm3d(planes)
        if factorised:
            m = _mid(planes, planes)
            self.conv2_s = _conv(planes, m, (1, 3, 3), (1, stride, stride), (0, 1, 1))
            self.bn2_s = nn.BatchNorm3d(m)
            self.conv2_t = _conv(m, planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0))
            self.bn2_t = nn.BatchNorm3d(planes)
        else:
            self.conv2 = _conv(planes, planes, 3, stride, 1)
            self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        r = self.relu
        out = r(self.bn1(self.conv1(x)))
        if self.factorised:
            out = r(self.bn2_t(self.conv2_t(r(self.bn2_s(self.conv2_s(out))))))
        else:
            out = r(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return r(out + shortcut)


LAYOUTS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
           50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
    """Hara et al.'s ResNet (`factorised=False`) or R(2+1)D (`factorised=True`), no fc."""

    def __init__(self, depth, factorised=False, conv1_t_size=7, stem_channels=None):
        super().__init__()
        block, blocks = LAYOUTS[depth]
        self.factorised = factorised
        cin = 64
        if factorised:
            mid = stem_channels or (3 * 64 * conv1_t_size * 49) // (3 * 49 + conv1_t_size * 64)
            self.conv1_s = _conv(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3))
            self.bn1_s = nn.BatchNorm3d(mid)
            self.conv1_t = _conv(mid, 64, (conv1_t_size, 1, 1), 1, (conv1_t_size // 2, 0, 0))
            self.bn1_t = nn.BatchNorm3d(64)
        else:
            self.conv1 = _conv(3, 64, (conv1_t_size, 7, 7), (1, 2, 2), (conv1_t_size // 2, 3, 3))
            self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
            stride = 1 if stage == 0 else 2
            layers = []
            for i in range(count):
                downsample = None
                s = stride if i == 0 else 1
                if i == 0 and (s != 1 or cin != planes * block.expansion):
                    downsample = nn.Sequential(_conv(cin, planes * block.expansion, 1, s),
                                               nn.BatchNorm3d(planes * block.expansion))
                layers.append(block(cin, planes, s, downsample, factorised))
                cin = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))

    def forward(self, x):
        r = self.relu
        if self.factorised:
            x = r(self.bn1_t(self.conv1_t(r(self.bn1_s(self.conv1_s(x))))))
        else:
            x = r(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return torch.flatten(nn.functional.adaptive_avg_pool3d(x, 1), 1)


class _Conv2Plus1D(nn.Sequential):
    def __init__(self, cin, cout, mid, stride=1):
        super().__init__(_conv(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1)),
                         nn.BatchNorm3d(mid), nn.ReLU(),
                         _conv(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0)))


class _TVBasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        mid = _mid(cin, planes)  # one width for both convolutions (torchvision)
        self.conv1 = nn.Sequential(_Conv2Plus1D(cin, planes, mid, stride),
                                   nn.BatchNorm3d(planes), nn.ReLU())
        self.conv2 = nn.Sequential(_Conv2Plus1D(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + shortcut)


class TorchvisionR2Plus1D(nn.Module):
    """torchvision VideoResNet R(2+1)D (IG-65M checkpoints' keys: stem.0, layer1.0.conv1.0.0...),
    no fc."""

    def __init__(self, blocks=(3, 4, 6, 3)):
        super().__init__()
        self.stem = nn.Sequential(_conv(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3)),
                                  nn.BatchNorm3d(45), nn.ReLU(),
                                  _conv(45, 64, (3, 1, 1), 1, (1, 0, 0)),
                                  nn.BatchNorm3d(64), nn.ReLU())
        cin = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
            layers = []
            for i in range(count):
                s = 2 if stage > 0 and i == 0 else 1
                downsample = None
                if i == 0 and (s != 1 or cin != planes):
                    downsample = nn.Sequential(_conv(cin, planes, 1, s), nn.BatchNorm3d(planes))
                layers.append(_TVBasicBlock(cin, planes, s, downsample))
                cin = planes
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))

    def forward(self, x):
        x = self.stem(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return torch.flatten(nn.functional.adaptive_avg_pool3d(x, 1), 1)


# --- MSCADC (paper 001, Table 3), with the MTL-AQA authors' module names ---------------------

def _bn_relu(channels):
    return nn.BatchNorm3d(channels), nn.ReLU()


class MSCADCBody(nn.Module):
    """conv1 32 ... conv5b 256 (dilated), each + BN + ReLU; pools after conv1, conv2, conv3b."""

    SPEC = (("1", 3, 32, 1, 1), ("2", 32, 64, 1, 1), ("3a", 64, 128, 1, 1),
            ("3b", 128, 128, 1, 1), ("4a", 128, 256, 1, 1), ("4b", 256, 256, 1, 1),
            ("5a", 256, 256, 2, 2), ("5b", 256, 256, 1, 2))
    POOLS = {"1": (1, 2, 2), "2": (2, 2, 2), "3b": (2, 2, 2)}

    def __init__(self):
        super().__init__()
        for suffix, cin, cout, padding, dilation in self.SPEC:
            setattr(self, f"conv{suffix}", nn.Conv3d(cin, cout, 3, padding=padding,
                                                     dilation=dilation))
            setattr(self, f"bn{suffix}", nn.BatchNorm3d(cout))

    def forward(self, x):
        for suffix, *_ in self.SPEC:
            x = torch.relu(getattr(self, f"bn{suffix}")(getattr(self, f"conv{suffix}")(x)))
            if suffix in self.POOLS:
                x = nn.functional.max_pool3d(x, self.POOLS[suffix], self.POOLS[suffix])
        return x  # dropout: identity in eval mode


class MSCADCHead(nn.Module):
    """Context-net head. `outputs`: {suffix: channels} of the final 3x3x3 convs (score head:
    {"": 1}; classifier: {"_position": 3, ...}); `caption=True`: the caption head's visual part."""

    def __init__(self, outputs=None, caption=False, width=12):
        super().__init__()
        self.head_conv1 = nn.Conv3d(256, width, 1, padding=1)
        self.cntxt_conv1 = nn.Conv3d(width, 2 * width, 3)
        self.cntxt_bn1 = nn.BatchNorm3d(2 * width)
        self.cntxt_conv2 = nn.Conv3d(2 * width, 2 * width, 3)
        self.cntxt_bn2 = nn.BatchNorm3d(2 * width)
        self.cntxt_conv3 = nn.Conv3d(2 * width, 4 * width, 3, dilation=2)
        self.cntxt_bn3 = nn.BatchNorm3d(4 * width)
        self.cntxt_conv4 = nn.Conv3d(4 * width, 8 * width, 3, dilation=4)
        self.cntxt_bn4 = nn.BatchNorm3d(8 * width)
        self.cntxt_conv5 = nn.Conv3d(8 * width, 8 * width, 3)
        self.cntxt_bn5 = nn.BatchNorm3d(8 * width)
        self.cntxt_conv6 = nn.Conv3d(8 * width, width, 1)
        self.head_bn1 = nn.BatchNorm3d(width)
        self.head_conv2 = nn.Conv3d(width, width, 3, padding=1)
        self.head_bn2 = nn.BatchNorm3d(width)
        self.caption = caption
        self.outputs = dict(outputs or {})
        if caption:
            self.head_conv3 = nn.Conv3d(width, width, 3, padding=1)
        for suffix, channels in self.outputs.items():
            setattr(self, f"head_conv3{suffix}", nn.Conv3d(width, channels, 3, padding=1))

    def forward(self, x):
        x = nn.functional.pad(self.head_conv1(x), (9,) * 6, mode="replicate")
        for i in range(1, 6):
            x = torch.relu(getattr(self, f"cntxt_bn{i}")(getattr(self, f"cntxt_conv{i}")(x)))
        x = nn.functional.max_pool3d(torch.relu(self.head_bn1(self.cntxt_conv6(x))), 2, 2)
        x = torch.relu(self.head_bn2(self.head_conv2(x)))
        if self.caption:
            return torch.flatten(nn.functional.max_pool3d(self.head_conv3(x), 2, 1), 1)
        # The authors' AvgPool3d((2, 11, 11)) is global for their 16x180x180 input.
        return {suffix: nn.functional.adaptive_avg_pool3d(
            getattr(self, f"head_conv3{suffix}")(x), 1).flatten(1) for suffix in self.outputs}


MSCADC_CLASS_SUFFIXES = {"position": "_position", "armstand": "_armstand",
                         "rotation_type": "_rot_type", "somersaults": "_ss_no", "twists": "_tw_no"}
MTL_AQA_CLASSES = {"position": 3, "armstand": 2, "rotation_type": 4, "somersaults": 10,
                   "twists": 8}


def mscadc_classifier():
    return MSCADCHead({MSCADC_CLASS_SUFFIXES[k]: v for k, v in MTL_AQA_CLASSES.items()})


# --- S3D (Kyle Min's PyTorch S3D, the one paper 000 uses; its state-dict key names) ----------

class _S3DBasic(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class _S3DSep(nn.Module):
    def __init__(self, cin, cout, k, s=1):
        super().__init__()
        p = k // 2
        self.conv_s = nn.Conv3d(cin, cout, (1, k, k), (1, s, s), (0, p, p), bias=False)
        self.bn_s = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.001)
        self.conv_t = nn.Conv3d(cout, cout, (k, 1, 1), (s, 1, 1), (p, 0, 0), bias=False)
        self.bn_t = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.001)

    def forward(self, x):
        return torch.relu(self.bn_t(self.conv_t(torch.relu(self.bn_s(self.conv_s(x))))))


class _S3DMixed(nn.Module):
    def __init__(self, cin, b0, b1, b2, b3):
        super().__init__()
        self.branch0 = nn.Sequential(_S3DBasic(cin, b0))
        self.branch1 = nn.Sequential(_S3DBasic(cin, b1[0]), _S3DSep(b1[0], b1[1], 3))
        self.branch2 = nn.Sequential(_S3DBasic(cin, b2[0]), _S3DSep(b2[0], b2[1], 3))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, 1, 1), _S3DBasic(cin, b3))

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class S3D(nn.Module):
    """`base` (16 modules) + `fc` (1x1x1 conv classifier); `features()` is what our backbone
    returns: the mean over time of (2, H, W) average-pooling windows."""

    MIXED = ((192, 64, (96, 128), (16, 32), 32), (256, 128, (128, 192), (32, 96), 64),
             (480, 192, (96, 208), (16, 48), 64), (512, 160, (112, 224), (24, 64), 64),
             (512, 128, (128, 256), (24, 64), 64), (512, 112, (144, 288), (32, 64), 64),
             (528, 256, (160, 320), (32, 128), 128), (832, 256, (160, 320), (32, 128), 128),
             (832, 384, (192, 384), (48, 128), 128))

    def __init__(self, num_classes=400):
        super().__init__()
        m = [_S3DMixed(*spec) for spec in self.MIXED]
        self.base = nn.Sequential(
            _S3DSep(3, 64, 7, 2), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            _S3DBasic(64, 64), _S3DSep(64, 192, 3), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            m[0], m[1], nn.MaxPool3d(3, 2, 1), m[2], m[3], m[4], m[5], m[6],
            nn.MaxPool3d(2, 2, 0), m[7], m[8])
        self.fc = nn.Sequential(nn.Conv3d(1024, num_classes, 1, bias=True))

    def features(self, x):
        y = self.base(x)
        y = nn.functional.avg_pool3d(y, (min(2, y.size(2)), y.size(3), y.size(4)), stride=1)
        return y.mean(dim=(2, 3, 4))


# --- I3D (piergiaj/pytorch-i3d's InceptionI3d: its state-dict key names, TF "SAME" padding) --

def _same_pad(size, kernel, stride):
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def _pad_same(x, kernel, stride):
    """Zero padding of TF's "SAME" for `[N, C, T, H, W]` (F.pad lists W first)."""
    pads = []
    for axis in (4, 3, 2):
        pads += _same_pad(x.size(axis), kernel[axis - 2], stride[axis - 2])
    return nn.functional.pad(x, pads)


class _I3DUnit(nn.Module):
    """`conv3d` (+ `bn`, eps 1e-3, momentum 0.01, + ReLU), "SAME"-padded at run time."""

    def __init__(self, cin, cout, kernel=1, stride=1, bias=False, bn=True):
        super().__init__()
        self.kernel, self.stride = (kernel,) * 3, (stride,) * 3
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x):
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        return x if self.bn is None else torch.relu(self.bn(x))


def _i3d_max_pool(x, kernel, stride):
    return nn.functional.max_pool3d(_pad_same(x, kernel, stride), kernel, stride)


class _I3DMixed(nn.Module):
    def __init__(self, cin, widths):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        self.b0 = _I3DUnit(cin, b0)
        self.b1a, self.b1b = _I3DUnit(cin, b1a), _I3DUnit(b1a, b1b, 3)
        self.b2a, self.b2b = _I3DUnit(cin, b2a), _I3DUnit(b2a, b2b, 3)
        self.b3b = _I3DUnit(cin, b3b)

    def forward(self, x):
        b3 = self.b3b(_i3d_max_pool(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), b3], 1)


class I3D(nn.Module):
    """Modules named by their end points (`Conv3d_1a_7x7.conv3d`, `Mixed_4b.b1b.bn`, ...) and
    `logits.conv3d` (with bias), as the port; `width` scales the channels like our
    `width_multiplier`. `body()` ends at Mixed_5c; `features()` is what our backbone returns."""

    MIXED = {"Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
             "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
             "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
             "Mixed_4f": (256, 160, 320, 32, 128, 128),
             "Mixed_5b": (256, 160, 320, 32, 128, 128),
             "Mixed_5c": (384, 192, 384, 48, 128, 128)}
    POOLS = {"Mixed_3b": ((1, 3, 3), (1, 2, 2)), "Mixed_4b": ((3, 3, 3), (2, 2, 2)),
             "Mixed_5b": ((2, 2, 2), (2, 2, 2))}

    def __init__(self, num_classes=400, width=1.0):
        super().__init__()

        def c(n):
            return max(1, int(round(n * width)))
        self.Conv3d_1a_7x7 = _I3DUnit(3, c(64), 7, 2)
        self.Conv3d_2b_1x1 = _I3DUnit(c(64), c(64))
        self.Conv3d_2c_3x3 = _I3DUnit(c(64), c(192), 3)
        cin = c(192)
        for name, widths in self.MIXED.items():
            widths = [c(w) for w in widths]
            setattr(self, name, _I3DMixed(cin, widths))
            cin = widths[0] + widths[2] + widths[4] + widths[5]
        self.logits = _I3DUnit(cin, num_classes, bias=True, bn=False)

    def body(self, x):
        x = self.Conv3d_1a_7x7(x)
        x = _i3d_max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        for name in self.MIXED:
            if name in self.POOLS:
                x = _i3d_max_pool(x, *self.POOLS[name])
            x = getattr(self, name)(x)
        return x

    @staticmethod
    def pool(y):
        """Mixed_5c -> features: (2, 7, 7) average-pooling windows (smaller where the map is),
        stride 1, averaged."""
        window = tuple(min(k, n) for k, n in zip((2, 7, 7), y.shape[2:]))
        return nn.functional.avg_pool3d(y, window, stride=1).mean(dim=(2, 3, 4))

    def features(self, x):
        return self.pool(self.body(x))



# --- I3D as hassony2/kinetics_i3d_pytorch has it (`src/i3dpt.py`; CoRe and TSA load its -------
# `model/model_rgb.pth`): the same network as `I3D` under other module names, with its padding

def _hassony2_pad(x, kernel, stride):
    """Zero padding of hassony2's "SAME" for `[N, C, T, H, W]`: time as TF's "SAME" (from the
    length modulo the stride), height and width by max(k - s, 0) whatever their size (TF's
    amount only when the size is divisible by the stride); the odd one after."""
    pads = []
    for axis in (4, 3, 2):  # F.pad lists W first
        k, s = kernel[axis - 2], stride[axis - 2]
        if axis == 2:
            pads += _same_pad(x.size(2), k, s)
        else:
            total = max(k - s, 0)
            pads += [total // 2, total - total // 2]
    return nn.functional.pad(x, pads)


class _Hassony2Unit(nn.Module):
    """`conv3d` (+ `batch3d`, eps 1e-3, + ReLU), hassony2's "SAME" padding."""

    def __init__(self, cin, cout, kernel=1, stride=1, bias=False, bn=True):
        super().__init__()
        self.kernel, self.stride = (kernel,) * 3, (stride,) * 3
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=bias)
        self.batch3d = nn.BatchNorm3d(cout, eps=1e-3) if bn else None

    def forward(self, x):
        x = self.conv3d(_hassony2_pad(x, self.kernel, self.stride))
        return x if self.batch3d is None else torch.relu(self.batch3d(x))


class _Hassony2MaxPool(nn.Module):
    """Zero padding as the units, then a ceil-mode max-pool (a last window may hang over)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        x = _hassony2_pad(x, self.kernel, self.stride)
        return nn.functional.max_pool3d(x, self.kernel, self.stride, ceil_mode=True)


class _Hassony2Mixed(nn.Module):
    def __init__(self, cin, widths):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        self.branch_0 = _Hassony2Unit(cin, b0)
        self.branch_1 = nn.Sequential(_Hassony2Unit(cin, b1a), _Hassony2Unit(b1a, b1b, 3))
        self.branch_2 = nn.Sequential(_Hassony2Unit(cin, b2a), _Hassony2Unit(b2a, b2b, 3))
        self.branch_3 = nn.Sequential(_Hassony2MaxPool((3, 3, 3), (1, 1, 1)),
                                      _Hassony2Unit(cin, b3b))

    def forward(self, x):
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x),
                          self.branch_3(x)], 1)


class I3DHassony2(nn.Module):
    """Modules `conv3d_1a_7x7.conv3d`, `conv3d_1a_7x7.batch3d`, `mixed_4b.branch_1.1.batch3d`,
    ..., and the classifier `conv3d_0c_1x1.conv3d` (with bias), as hassony2's port; `width`
    scales the channels like our `width_multiplier`. `body()` ends at Mixed_5c; `features()`
    pools it as our backbone does."""

    # The max-pool before each of these blocks (parameter-free, named as the port's).
    POOL_NAMES = {"Mixed_3b": "maxPool3d_3a_3x3", "Mixed_4b": "maxPool3d_4a_3x3",
                  "Mixed_5b": "maxPool3d_5a_2x2"}

    def __init__(self, num_classes=400, width=1.0):
        super().__init__()

        def c(n):
            return max(1, int(round(n * width)))
        self.conv3d_1a_7x7 = _Hassony2Unit(3, c(64), 7, 2)
        self.maxPool3d_2a_3x3 = _Hassony2MaxPool((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = _Hassony2Unit(c(64), c(64))
        self.conv3d_2c_3x3 = _Hassony2Unit(c(64), c(192), 3)
        for block, pool in I3D.POOLS.items():
            setattr(self, self.POOL_NAMES[block], _Hassony2MaxPool(*pool))
        cin = c(192)
        for name, widths in I3D.MIXED.items():
            widths = [c(w) for w in widths]
            setattr(self, name.lower(), _Hassony2Mixed(cin, widths))
            cin = widths[0] + widths[2] + widths[4] + widths[5]
        self.conv3d_0c_1x1 = _Hassony2Unit(cin, num_classes, bias=True, bn=False)

    def body(self, x):
        x = self.maxPool3d_2a_3x3(self.conv3d_1a_7x7(x))
        x = self.conv3d_2c_3x3(self.conv3d_2b_1x1(x))
        for name in I3D.MIXED:
            if name in self.POOL_NAMES:
                x = getattr(self, self.POOL_NAMES[name])(x)
            x = getattr(self, name.lower())(x)
        return x

    def features(self, x):
        return I3D.pool(self.body(x))

def randomise(module, seed):
    """`module` with random weights and BN statistics (BN scales and variances in [0.5, 1.5],
    so that BN is not the identity; He-normal kernels), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith(".weight") and tensor.dim() == 1:  # BN scale
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.dim() > 1:
                fan_in = int(math.prod(tensor.shape[1:]))
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return module.eval()
