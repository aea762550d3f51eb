"""The vector-quantised structure (VQ-VAE, van den Oord et al. 2017): x -> z_e grid -> nearest codes
-> decoder, with the codebook and commitment losses.

Its ELBO, as the paper frames it: q(z|x) is one-hot at the nearest code of every grid position
(deterministic) and the prior is uniform over the K codes at each position, so
KL(q || p) = sum over positions of log K, a constant, exactly. The latent group records that KL;
training adds it to the loss with no effect on the gradients, and -ELBO = -log p(x|z_q) + KL is a
true bound for the model p(x) = sum_z p(z) p(x|z) with that uniform prior. The uniform prior is
not worth sampling (decoded, it is noise): a prior stage (vq-vae-prior) models the codes instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from vaezoo.errors import NotApplicable
from vaezoo.evaluation.measures import bits_per_dim
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import LatentGroup, Pass, Structure
from vaezoo_plugins.vq_vae.codebook import Codebook, code_usage


class VectorQuantised(Structure):
    """The variant's encoder (to a grid z_e [B, D, h, w]), its codebook, decoder and likelihood.

    Provides "discrete-codes": its latent group's sample is the code grid [B, h, w], `num_codes`
    and `code_shape` describe it, `decode_codes` decodes one; a prior stage builds on that.
    """

    capabilities = frozenset({"discrete-codes", "elbo"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.encoder = ctx.part("encoder")
        self.decoder = ctx.part("decoder")
        self.likelihood = ctx.part("likelihood")
        hp = ctx.hp
        self.codebook = Codebook(hp["codebook_size"], ctx.latent_dim, commitment=hp["commitment"], ema=hp["ema"],
                                 decay=hp["ema_decay"], epsilon=hp["ema_epsilon"], restart_after=hp["restart_after"])
        self.num_codes = int(hp["codebook_size"])
        self.code_shape = tuple(self.encoder.grid_shape)
        #: KL(one-hot q || uniform p) per image: log K nats at every grid position.
        self.kl_per_image = math.prod(self.code_shape) * math.log(self.num_codes)

    def forward(self, x: Tensor) -> Pass:
        quantised = self.codebook(self.encoder(x))
        out = self.decoder(quantised.straight_through)
        recon = -self.likelihood.log_prob(x, out)
        kl = recon.new_full(recon.shape, self.kl_per_image)
        group = LatentGroup(quantised.codes, kl, name="codes")
        return Pass([group], out, recon, quantised.losses, quantised.stats)

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        """[B, h, w] the nearest code at every grid position of x."""
        return self.codebook.encode(self.encoder(x))

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """Images [B, C, H, W] (the likelihood's mean) of code grids [B, h, w]."""
        return self.likelihood.mean(self.decoder(self.codebook.lookup(codes)))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode_codes(self.codes(x))

    def sample(self, n: int) -> Tensor:
        raise NotApplicable("a VQ-VAE's own prior is uniform over the codes, and decoded uniform codes are noise; "
                            "train a prior over its codes with `vaezoo train vq-vae-prior --parent RUN` and sample "
                            "that run")

    def representation(self, x: Tensor) -> Tensor:
        raise NotApplicable("a VQ-VAE's code is a grid of discrete codes: there is no flat code to traverse or "
                            "measure (its codes are VectorQuantised.codes)")

    @torch.no_grad()
    def measures(self, batches: Iterable[Tensor]) -> dict[str, float]:
        """Codebook perplexity and usage over the split (every grid position of every image), and the
        decoder's -log p(x|z_q) in bits per dimension: what the VQ-VAE papers report."""
        counts = torch.zeros(self.num_codes, dtype=torch.int64)
        recon, images, shape = 0.0, 0, None
        for x in batches:
            out = self(x)
            counts += torch.bincount(out.groups[0].sample.flatten(), minlength=self.num_codes).cpu()
            recon += float(out.recon.sum())
            images += x.shape[0]
            shape = tuple(x.shape[1:])
        perplexity, usage = code_usage(counts)
        return {"codebook_perplexity": float(perplexity), "codebook_usage": float(usage),
                "codes_used": int((counts > 0).sum()), "codebook_size": self.num_codes,
                "recon_bits_per_dim": bits_per_dim(recon / max(images, 1), shape) if shape else math.nan}
