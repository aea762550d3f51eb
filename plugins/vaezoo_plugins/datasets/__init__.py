"""Built-in datasets: FashionMNIST, MNIST and binarised MNIST (IDX or .amat files, or a torchvision
download), CIFAR-10, CelebA 64x64, dSprites (official file or drawn procedurally), your own image
folder or tensor file, and synthetic shapes."""

from vaezoo import hookimpl
from vaezoo.hparams import Param

_HERE = "vaezoo_plugins.datasets"
TEST_FRACTION = Param("test_fraction", "float", 0.1, "share of the data held out for testing when it has no "
                      "test split (a fixed random choice)", low=0.0, high=0.5, low_exclusive=True)


@hookimpl
def register_datasets(register):
    register("fashion-mnist", f"{_HERE}.idx:load_fashion_mnist",
             "Zalando FashionMNIST, 60k/10k grey 28x28 padded to 32x32, 10 classes")
    register("mnist", f"{_HERE}.idx:load_mnist",
             "MNIST digits, 60k/10k grey 28x28 padded to 32x32, 10 classes")
    register("binarized-mnist", f"{_HERE}.binarized:load_binarized_mnist",
             "MNIST binarised anew every epoch (dynamic binarisation); test set binarised once, fixed seed")
    register("binarized-fashion-mnist", f"{_HERE}.binarized:load_binarized_fashion_mnist",
             "FashionMNIST binarised anew every epoch (dynamic binarisation); test set binarised once, fixed seed")
    register("binarized-mnist-fixed", f"{_HERE}.binarized:load_binarized_mnist_fixed",
             "the fixed binarisation of Larochelle & Murray 2011: 50k/10k .amat files, padded to 32x32")
    register("cifar10", f"{_HERE}.torchvision_sets:load_cifar10",
             "CIFAR-10, 50k/10k colour 32x32, 10 classes (its binary version: nothing unpickled)")
    register("celeba", f"{_HERE}.torchvision_sets:load_celeba",
             "CelebA aligned faces, 148x148 centre crop resized to 64x64 colour, official train/test split")
    register("dsprites", f"{_HERE}.dsprites:load_dsprites",
             "dSprites, 737,280 binary 64x64 sprites with 5 ground-truth factors; the official npz from "
             "--data-dir, else drawn procedurally (cached)")
    register("image-folder", f"{_HERE}.image_folder:load_image_folder",
             "your folder of PNG/JPEG images (--data-dir), optionally one subfolder per class", params=(
                 Param("image_size", "int", 64, "side of the square images, in pixels", low=1, high=4096),
                 Param("image_mode", "str", "rgb", "colour or grey images", choices=("rgb", "grey")),
                 Param("image_fit", "str", "crop", "crop: the largest centred square, resized; resize: squashed",
                       choices=("crop", "resize")),
                 TEST_FRACTION))
    register("tensor-file", f"{_HERE}.tensor_file:load_tensor_file",
             "your .npy or .safetensors array (--data-dir): vectors [N, D] or images [N, C, H, W]",
             params=(TEST_FRACTION,))
    register("synthetic", f"{_HERE}.synthetic:load_synthetic",
             "1,024/256 generated 32x32 discs and bars; for tests and smoke runs, no files needed")
