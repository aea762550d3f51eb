"""The zoo's benchmark protocols (`vaezoo bench NAME`), with the literature's numbers for them."""

from vaezoo import hookimpl


@hookimpl
def register_protocols(register):
    register("fashion-mnist", "vaezoo_plugins.protocols.fashion_mnist:PROTOCOL",
             "the whole zoo on FashionMNIST, grey levels and dynamically binarised, 1 epoch, 2 seeds (docs/results.md)")
