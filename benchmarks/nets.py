"""The layers of the nets the kernel benchmark takes its shapes from (layers/*.cfg: AlexNet
and its two-tower form, the CIFAR nets, Fashion), at batch 128; workloads.py builds the cases
on them.

Pure Python, no GPU; the output sizes are the contract's rules (cuda-convnet's ceil).
"""
from dataclasses import dataclass

from convnet.backend.contract import conv_output_size, pool_output_size


def numel(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def shape_str(shape):
    return "x".join(str(int(s)) for s in shape)


@dataclass(frozen=True)
class ConvLayer:
    """One convolution, or with `local` a locally connected layer (a filter bank per output
    position): input (N, C, H, W), F filters fs x fs at `stride`, `padding`, `groups`."""
    net: str
    name: str
    N: int
    C: int
    H: int
    W: int
    F: int
    fs: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    first: bool = False  # reads the data layer: its bwd_data is never needed
    local: bool = False

    @property
    def OH(self):
        return conv_output_size(self.H, self.fs, self.stride, self.padding)

    @property
    def OW(self):
        return conv_output_size(self.W, self.fs, self.stride, self.padding)

    @property
    def conv_shape(self):
        """csrc/conv.h's ConvShape fields in order (convnet.backend.algos.SHAPE_FIELDS)."""
        return (self.N, self.C, self.H, self.W, self.F, self.fs, self.OH, self.OW, self.stride,
                self.padding, self.groups)

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        bank = (self.F, self.C // self.groups, self.fs, self.fs)
        return (self.OH, self.OW) + bank if self.local else bank

    @property
    def y_shape(self):
        return (self.N, self.F, self.OH, self.OW)

    @property
    def label(self):
        return f"{self.net}-{self.name}"

    def flops(self):
        """The minimum FLOPs of any of the three passes."""
        return (2 * self.N * self.F * self.OH * self.OW * (self.C // self.groups)
                * self.fs * self.fs)

    def describe(self):
        g = f" g{self.groups}" if self.groups != 1 else ""
        p = f" p{self.padding}" if self.padding else ""
        kind = "local " if self.local else ""
        return (f"{shape_str(self.x_shape)} -> {kind}{self.F}x{self.fs}x{self.fs}/{self.stride}"
                f"{p}{g} -> {shape_str(self.y_shape)}")


ALEXNET_CONVS = (
    ConvLayer("alexnet", "conv1", 128, 3, 227, 227, 96, 11, stride=4, first=True),
    ConvLayer("alexnet", "conv2", 128, 96, 27, 27, 256, 5, padding=2, groups=2),
    ConvLayer("alexnet", "conv3", 128, 256, 13, 13, 384, 3, padding=1),
    ConvLayer("alexnet", "conv4", 128, 384, 13, 13, 384, 3, padding=1, groups=2),
    ConvLayer("alexnet", "conv5", 128, 384, 13, 13, 256, 3, padding=1, groups=2),
)
FASHION_CONVS = (
    ConvLayer("fashion", "conv1", 128, 1, 28, 28, 32, 5, padding=2, first=True),
    ConvLayer("fashion", "conv2", 128, 32, 14, 14, 64, 5, padding=2),
)
CIFAR_CONVS = (
    ConvLayer("cifar", "conv1", 128, 3, 32, 32, 64, 5, padding=2, first=True),
)
CONV_LAYERS = ALEXNET_CONVS + FASHION_CONVS + CIFAR_CONVS
# layers/cifar10-conv-local-11pct.cfg: local3 and local4 on pool2's 64x6x6
LOCAL_LAYERS = (
    ConvLayer("cifar", "local3", 128, 64, 6, 6, 64, 3, padding=1, local=True),
    ConvLayer("cifar", "local4", 128, 64, 6, 6, 32, 3, padding=1, local=True),
)


@dataclass(frozen=True)
class FcLayer:
    """x (N, K) @ w (K, M)."""
    net: str
    name: str
    N: int
    K: int
    M: int

    @property
    def x_shape(self):
        return (self.N, self.K)

    @property
    def w_shape(self):
        return (self.K, self.M)

    @property
    def y_shape(self):
        return (self.N, self.M)

    @property
    def label(self):
        return f"{self.net}-{self.name}"

    def flops(self):
        return 2 * self.N * self.K * self.M


_POOL3 = pool_output_size(ALEXNET_CONVS[4].OH, 3, 2, 0)  # conv5's 13x13 pooled: 6x6
FC_LAYERS = (
    FcLayer("alexnet", "fc6", 128, 256 * _POOL3 * _POOL3, 4096),
    FcLayer("alexnet", "fc7", 128, 4096, 4096),
    FcLayer("alexnet", "fc8", 128, 4096, 1000),
    FcLayer("fashion", "fc3", 128, 64 * 7 * 7, 256),  # pool2's 64x7x7
)

# AlexNet's conv1 output: where ReLU, LRN and the first max-pool run.
ALEXNET_CONV1_OUT = ALEXNET_CONVS[0].y_shape  # (128, 96, 55, 55)
CIFAR_CONV2_OUT = (128, 32, 16, 16)   # cifar10-18pct: conv2's output, avg-pooled by pool2
CIFAR_POOL1_OUT = (128, 32, 16, 16)   # cifar10-18pct: pool1's output, normalized by rnorm1
ALEXNET_TOWER = (128, 128, 13, 13)    # alexnet-2gpu: pool2a and pool2b, joined by conv3
