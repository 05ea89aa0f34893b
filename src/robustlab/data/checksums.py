"""Official download locations and checksums of the datasets robustlab can fetch.

IDX datasets (MNIST, Fashion-MNIST) are verified by the SHA-256 of the *decompressed* IDX file,
which is identical for the official `.gz`, the raw file and any re-compressed copy (Debian's
fashion-mnist package and the shared MNIST copy are re-compressed, so their `.gz` bytes differ
from the official ones while their contents do not). MNIST downloads are in addition checked
against the SHA-256 of the official `.gz` files.

CIFAR-10, CIFAR-100, SVHN, Tiny-ImageNet: only MD5s are published; we verify downloads against them.
"""

from __future__ import annotations

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)

# stem -> (sha256 of decompressed IDX bytes, sha256 of the official .gz or None)
MNIST_SHA256: dict[str, tuple[str, str | None]] = {
    "train-images-idx3-ubyte": (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte": (
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte": (
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}

FASHION_MNIST_SHA256: dict[str, tuple[str, str | None]] = {
    "train-images-idx3-ubyte": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", None),
    "train-labels-idx1-ubyte": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", None),
    "t10k-images-idx3-ubyte": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", None),
    "t10k-labels-idx1-ubyte": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", None),
}

CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"

# CIFAR-100 binary version: the archive's MD5 as the Toronto page publishes it (168,513,733
# bytes); the python version's (not read, see data/cifar100.py) is eb9058c3a382ffc7106e4002c42a8d85.
CIFAR100_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
CIFAR100_BINARY_MD5 = "03b5dce01913d631647c71ecec9e9cb8"

# SVHN cropped digits (format 2): one MATLAB file per split; the publisher gives no checksum,
# these MD5s are the ones torchvision verifies the same files against.
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN_MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    "extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
}

# Tiny-ImageNet (CS231n): the zip's MD5 (248,100,043 bytes), as published with the dataset's
# loaders (the course page gives none).
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
