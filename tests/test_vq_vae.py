"""VQ-VAE and its PixelCNN prior against independent computations: nearest codes by brute force,
the straight-through gradient, the codebook and commitment gradients, EMA updates and restarts by
hand, perplexity and usage by hand counts, the KL by torch's own, PixelCNN causality by autograd,
a normalised likelihood and samples that follow it."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch
from torch.distributions import Categorical, kl_divergence
from vaezoo_plugins.vq_vae.codebook import Codebook, code_usage
from vaezoo_plugins.vq_vae.pixelcnn import GatedPixelCNN

from vaezoo.errors import NotApplicable

SMALL = {"hidden_channels": 8, "residual_channels": 4, "residual_layers": 1, "latent_dim": 3, "codebook_size": 6}


def codebook(vectors, *, ema=False, decay=0.9, epsilon=0.5, restart_after=0, commitment=0.25) -> Codebook:
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    book = Codebook(vectors.shape[0], vectors.shape[1], commitment=commitment, ema=ema, decay=decay,
                    epsilon=epsilon, restart_after=restart_after)
    with torch.no_grad():
        book.vectors.copy_(vectors)
        if ema:
            book.ema_sum.copy_(vectors)  # one pseudo-observation of each starting vector
        book.idle_steps.zero_()  # as if every code had just been used
    return book


def as_grid(rows) -> torch.Tensor:
    """Rows [N, D] as encoder outputs [1, D, 1, N] (one image, a 1 x N grid)."""
    return torch.as_tensor(rows, dtype=torch.float32).T[None, :, None, :].contiguous()


# --- the codebook ---------------------------------------------------------------------------------

def test_nearest_code_is_the_brute_force_nearest():
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(17, 5, generator=generator)
    points = 2 * torch.randn(300, 5, generator=generator)
    book = codebook(vectors)
    brute = [min(range(17), key=lambda k: sum((float(p[d]) - float(vectors[k, d])) ** 2 for d in range(5)))
             for p in points]
    assert book.nearest(points).tolist() == brute
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the distances stay in float32
        assert book.nearest(points).tolist() == brute
    tied = codebook([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # a tie goes to the first code
    assert tied.nearest(torch.tensor([[0.9, 0.1]])).tolist() == [0]


def test_straight_through_gradient_is_the_decoders_gradient_at_the_code(build_variant):
    model, _ = build_variant("vq-vae", **SMALL)
    model.eval()
    x = torch.rand(4, 1, 32, 32)
    z_e = model.encoder(x)
    z_e.retain_grad()
    quantised = model.codebook(z_e)
    (-model.likelihood.log_prob(x, model.decoder(quantised.straight_through)).sum()).backward()
    z_q = model.codebook.vectors[quantised.codes].permute(0, 3, 1, 2).detach().requires_grad_()
    assert torch.equal(quantised.straight_through, z_q)  # the forward value is the code vector itself
    at_code, = torch.autograd.grad(-model.likelihood.log_prob(x, model.decoder(z_q)).sum(), z_q)
    assert at_code.abs().sum() > 0 and torch.allclose(z_e.grad, at_code, rtol=1e-6, atol=1e-7)
    assert model.codebook.vectors.grad is None  # the reconstruction does not move the codebook


def test_codebook_and_commitment_gradients_by_hand():
    generator = torch.Generator().manual_seed(1)
    vectors = torch.randn(4, 3, generator=generator)
    rows = torch.randn(10, 3, generator=generator)
    book = codebook(vectors, commitment=0.25).eval()
    z_e = as_grid(rows).repeat(2, 1, 1, 1).requires_grad_()  # two images, the same 10 positions each
    quantised = book(z_e)
    losses = quantised.losses
    value = {name: float(loss.detach()) for name, loss in losses.items()}
    codes = book.nearest(rows).tolist()
    assert value["codebook"] == pytest.approx(sum(float((vectors[k] - r).pow(2).sum()) for k, r in zip(codes, rows)))
    assert value["commitment"] == pytest.approx(0.25 * value["codebook"])
    grad_vectors, = torch.autograd.grad(losses["codebook"], book.vectors)
    expected = torch.zeros(4, 3)
    for k, r in zip(codes, rows):
        expected[k] += 2 * (vectors[k] - r)  # two images, averaged over the batch of two
    assert torch.allclose(grad_vectors, expected, atol=1e-5)
    grad_z, = torch.autograd.grad(losses["commitment"], z_e)
    for i, (k, r) in enumerate(zip(codes, rows)):
        assert torch.allclose(grad_z[0, :, 0, i], 0.25 * 2 * (r - vectors[k]) / 2, atol=1e-6)


def _ema_by_hand(state, rows, codes, decay, epsilon):
    """One EMA step in plain Python: state = (counts N_k, sums m_k), returns it and the vectors."""
    counts, sums = state
    size, dim = len(counts), len(sums[0])
    n = [sum(1 for c in codes if c == k) for k in range(size)]
    s = [[sum(r[d] for r, c in zip(rows, codes) if c == k) for d in range(dim)] for k in range(size)]
    counts = [decay * counts[k] + (1 - decay) * n[k] for k in range(size)]
    sums = [[decay * sums[k][d] + (1 - decay) * s[k][d] for d in range(dim)] for k in range(size)]
    total = sum(counts)
    smoothed = [(counts[k] + epsilon) / (total + size * epsilon) * total for k in range(size)]
    return (counts, sums), [[sums[k][d] / smoothed[k] for d in range(dim)] for k in range(size)]


def test_ema_updates_equal_a_hand_computation():
    start = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    book = codebook(start, ema=True, decay=0.9, epsilon=0.5).train()
    state = ([1.0, 1.0, 1.0], [list(v) for v in start])
    for rows in ([[0.1, 0.1], [0.9, 0.2], [1.2, -0.1]], [[0.0, 0.8], [0.2, 0.1], [1.0, 0.1], [0.1, 1.1]]):
        codes = book.nearest(torch.tensor(rows)).tolist()
        quantised = book(as_grid(rows))
        assert quantised.codes.flatten().tolist() == codes  # quantised with the vectors before the update
        state, expected = _ema_by_hand(state, rows, codes, 0.9, 0.5)
        assert torch.allclose(book.vectors, torch.tensor(expected), atol=1e-6)
        assert torch.allclose(book.ema_count, torch.tensor(state[0])) and torch.allclose(book.ema_sum, torch.tensor(state[1]))
    assert book.idle_steps.tolist() == [0, 0, 0] and "codebook" not in quantised.losses
    before = {k: v.clone() for k, v in book.state_dict().items()}
    book.eval()(as_grid([[5.0, 5.0]]))
    assert all(torch.equal(v, before[k]) for k, v in book.state_dict().items())  # evaluation moves nothing


@pytest.mark.parametrize("ema", [False, True])
def test_a_code_unused_for_restart_after_batches_restarts_on_an_encoder_output(ema):
    book = codebook([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]], ema=ema, restart_after=2).train()
    generator = torch.Generator().manual_seed(2)
    live = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]).repeat(2, 1)  # every batch uses codes 0, 1 and 2
    batches = [live + 0.1 * torch.randn(6, 2, generator=generator) for _ in range(4)]
    restarted = [float(book(as_grid(rows)).stats["codes_restarted"]) for rows in batches[:2]]
    assert restarted == [0.0, 0.0] and book.idle_steps[3] == 2
    before = book.vectors[:3].clone()
    quantised = book(as_grid(batches[2]))
    assert float(quantised.stats["codes_restarted"]) == 1.0
    if not ema:
        assert any(torch.equal(book.vectors[3], row) for row in batches[2])  # the vector is an encoder output
        assert torch.equal(book.vectors[:3], before)  # the live codes are left alone
    else:
        chosen = int((quantised.codes == 3).sum())
        assert chosen >= 1  # the encoder output it moved to now picks it
        assert float(book.ema_count[3]) == pytest.approx(0.9 * 1.0 + 0.1 * chosen)
    assert book.idle_steps[3] == 0
    assert float(book(as_grid(batches[3])).stats["codes_restarted"]) == 0.0


def test_the_first_training_batch_places_a_fresh_codebook_on_its_encoder_outputs():
    book = Codebook(5, 2, commitment=0.25, ema=False, decay=0.9, epsilon=1e-5, restart_after=10).train()
    rows = torch.randn(7, 2)
    quantised = book(as_grid(rows))
    assert float(quantised.stats["codes_restarted"]) == 5
    assert all(any(torch.equal(vector, row) for row in rows) for vector in book.vectors)
    assert len({tuple(v.tolist()) for v in book.vectors}) == 5  # distinct positions


def test_perplexity_and_usage_against_a_hand_count():
    book = codebook([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]).eval()
    rows = [[0.1, 0.0]] * 3 + [[1.0, 0.1]] * 2 + [[0.0, 0.9]]  # codes 0, 0, 0, 1, 1, 2
    stats = book(as_grid(rows)).stats
    frequencies = [3 / 6, 2 / 6, 1 / 6]
    assert float(stats["codebook_perplexity"]) == pytest.approx(math.exp(-sum(p * math.log(p) for p in frequencies)))
    assert float(stats["codebook_usage"]) == 3 / 4
    perplexity, usage = code_usage(torch.tensor([5, 5, 5, 5]))
    assert float(perplexity) == pytest.approx(4.0) and float(usage) == 1.0


# --- the structure --------------------------------------------------------------------------------

def test_kl_is_the_one_hot_posteriors_kl_from_the_uniform_prior(build_variant):
    model, objective = build_variant("vq-vae", **SMALL)
    out = model.eval()(torch.rand(3, 1, 32, 32))
    codes = out.groups[0].sample
    assert codes.shape == (3, 8, 8) and codes.dtype == torch.int64 and model.code_shape == (8, 8)
    q = Categorical(probs=torch.nn.functional.one_hot(codes, 6).float())
    p = Categorical(probs=torch.full((6,), 1 / 6))
    by_torch = kl_divergence(q, p).flatten(1).sum(1)
    assert torch.allclose(out.kl, by_torch) and float(out.kl[0]) == pytest.approx(64 * math.log(6))
    with torch.no_grad():
        terms = objective(model, torch.rand(3, 1, 32, 32), 0)
    assert float(terms["loss"]) == pytest.approx(float(terms["neg_elbo"] + terms["codebook"] + terms["commitment"]))


def test_measures_count_the_codes_of_the_split(build_variant):
    model, _ = build_variant("vq-vae", **SMALL)
    model.eval()
    batches = [torch.rand(5, 1, 32, 32), torch.rand(3, 1, 32, 32)]
    counts = Counter(c for x in batches for c in model.codes(x).flatten().tolist())
    total = sum(counts.values())
    measures = model.measures(iter(batches))
    assert measures["codes_used"] == len(counts) and measures["codebook_usage"] == pytest.approx(len(counts) / 6)
    assert measures["codebook_perplexity"] == pytest.approx(
        math.exp(-sum(n / total * math.log(n / total) for n in counts.values())), rel=1e-5)
    with torch.no_grad():
        recon = sum(float(model(x).recon.sum()) for x in batches) / 8
    assert measures["recon_bits_per_dim"] == pytest.approx(recon / (1024 * math.log(2)), rel=1e-5)


def test_what_does_not_apply_says_so(build_variant):
    model, _ = build_variant("vq-vae", **SMALL)
    assert "density" not in model.capabilities and "discrete-codes" in model.capabilities
    with pytest.raises(NotApplicable, match="vq-vae-prior --parent"):
        model.sample(2)
    with pytest.raises(NotApplicable, match="no flat code"):
        model.representation(torch.rand(1, 1, 32, 32))


def test_training_mode_alone_moves_the_codebook(build_variant):
    model, objective = build_variant("vq-vae", **SMALL, ema=True, restart_after=1)
    x = torch.rand(4, 1, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    objective(model, x, 0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.train()
    objective(model, x, 0)
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == {"codebook.vectors", "codebook.ema_count", "codebook.ema_sum", "codebook.idle_steps"}


# --- the PixelCNN prior ---------------------------------------------------------------------------

def test_pixelcnn_logits_depend_on_every_earlier_code_and_no_later_one():
    """Autograd: d logits(p) / d input(q) is zero for q at or after p in raster order, and not zero
    for every q before p (no blind spot: five layers cover the 8x8 grid)."""
    torch.manual_seed(0)
    net = GatedPixelCNN(num_codes=3, channels=8, layers=5).double()
    embedded = torch.randn(1, 8, 8, 8, dtype=torch.float64, requires_grad=True)
    logits = net.logits_of_embedded(embedded)
    for p in range(64):
        grad, = torch.autograd.grad(logits[0, :, p // 8, p % 8].sum(), embedded, retain_graph=True)
        reach = grad.abs().sum(1).flatten()
        assert torch.all(reach[p:] == 0), f"position {p} sees a later code"
        assert torch.all(reach[:p] > 0), f"position {p} misses an earlier code"


def test_changing_a_later_code_never_changes_an_earlier_logit():
    torch.manual_seed(1)
    net = GatedPixelCNN(num_codes=5, channels=8, layers=3)
    codes = torch.randint(5, (2, 6, 6))
    logits = net(codes).flatten(2)
    for p in range(36):
        changed = codes.clone().flatten(1)
        changed[:, p:] = torch.randint(5, changed[:, p:].shape)
        assert torch.equal(net(changed.view(2, 6, 6)).flatten(2)[:, :, :p + 1], logits[:, :, :p + 1])


def _sharp_binary_net() -> GatedPixelCNN:
    torch.manual_seed(3)
    net = GatedPixelCNN(num_codes=2, channels=6, layers=2)
    with torch.no_grad():
        net.head[-1].weight.mul_(8.0)  # far from uniform, so the conditionals matter
    return net


def test_the_likelihood_of_all_2x2_binary_grids_sums_to_one():
    net = _sharp_binary_net()
    grids = torch.tensor(list(itertools.product([0, 1], repeat=4))).view(16, 2, 2)
    probabilities = net.log_prob(grids).exp().detach()
    assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(probabilities.max()) > 2 / 16  # not the uniform distribution


def test_samples_follow_the_models_distribution():
    net = _sharp_binary_net()
    grids = torch.tensor(list(itertools.product([0, 1], repeat=4))).view(16, 2, 2)
    probabilities = net.log_prob(grids).exp().detach()
    n = 20_000
    torch.manual_seed(4)
    samples = net.sample(n, (2, 2)).flatten(1)
    index = (samples * torch.tensor([8, 4, 2, 1])).sum(1)
    frequencies = torch.bincount(index, minlength=16).double() / n
    error = (probabilities.double() * (1 - probabilities.double()) / n).sqrt()
    assert torch.all((frequencies - probabilities).abs() <= 4.5 * error + 1e-9), (frequencies, probabilities)


def test_the_prior_stage_scores_the_frozen_parents_codes(build_variant):
    parent, _ = build_variant("vq-vae", **SMALL)
    child, objective = build_variant("vq-vae-prior", parent=parent, prior_channels=8, prior_layers=2)
    x = torch.rand(4, 1, 32, 32)
    child.train()
    assert not parent.training  # the parent stays in eval mode: no EMA, no restarts
    out = child(x)
    first = parent(x)
    assert torch.equal(out.groups[0].sample, parent.codes(x)) and torch.equal(out.recon, first.recon)
    assert torch.allclose(out.kl, -child.pixelcnn.log_prob(parent.codes(x)))
    terms = objective(child, x, 0)
    terms["loss"].backward()
    assert float(terms["neg_elbo"].detach()) == pytest.approx(float((terms["recon"] + terms["kl"]).detach()))
    assert all(p.grad is None for p in parent.parameters())
    assert all(p.grad is not None for p in child.pixelcnn.parameters())
    samples = child.sample(3)
    assert samples.shape == (3, 1, 32, 32) and 0 <= float(samples.min()) and float(samples.max()) <= 1
