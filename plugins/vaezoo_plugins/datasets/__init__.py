"""Built-in datasets: FashionMNIST and MNIST (IDX files or torchvision download), dSprites (official file or
drawn procedurally) and synthetic shapes."""

from vaezoo import hookimpl


@hookimpl
def register_datasets(register):
    register("fashion-mnist", "vaezoo_plugins.datasets.idx:load_fashion_mnist",
             "Zalando FashionMNIST, 60k/10k grey 28x28 padded to 32x32")
    register("mnist", "vaezoo_plugins.datasets.idx:load_mnist",
             "MNIST digits, 60k/10k grey 28x28 padded to 32x32")
    register("dsprites", "vaezoo_plugins.datasets.dsprites:load_dsprites",
             "dSprites, 737,280 binary 64x64 sprites with 5 ground-truth factors; the official npz from "
             "--data-dir, else drawn procedurally (cached)")
    register("synthetic", "vaezoo_plugins.datasets.synthetic:load_synthetic",
             "1,024/256 generated 32x32 discs and bars; for tests and smoke runs, no files needed")
