"""How good samples look, measured in a classifier's feature space: a Frechet distance and the
precision and recall of Kynkaanniemi et al. 2019.

The features come from a small classifier trained on the data set itself (for FashionMNIST there
is no Inception network that knows clothes, and none can be downloaded here), so the Frechet
distance is "FID-like", not the Inception FID: comparable between models on one data set and one
classifier, not with published FIDs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Kynkaanniemi et al.'s k for the nearest-neighbour radii.
NEIGHBOURS = 3
FEATURES = 128


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to features [N, F], [M, F].

    Tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2),
    which is symmetric, so it is computed with eigh in float64 (no scipy).
    """
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mean_a - mean_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * middle)


def _radii(points: Tensor, k: int) -> Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    distances = torch.cdist(points, points)
    return distances.kthvalue(k + 1, dim=1).values  # the 1st is the point itself, at 0


def _covered(queries: Tensor, centres: Tensor, radii: Tensor, chunk: int = 4096) -> Tensor:
    """For each query, whether it lies within radius of some centre."""
    inside = [(torch.cdist(queries[i:i + chunk], centres) <= radii).any(1) for i in range(0, len(queries), chunk)]
    return torch.cat(inside)


def precision_recall(real: Tensor, fake: Tensor, k: int = NEIGHBOURS) -> tuple[float, float]:
    """Improved precision (share of samples inside the real data's k-NN manifold) and recall (share
    of real points inside the samples' manifold), Kynkaanniemi et al. 2019."""
    real, fake = real.double(), fake.double()
    precision = _covered(fake, real, _radii(real, k)).double().mean()
    recall = _covered(real, fake, _radii(fake, k)).double().mean()
    return float(precision), float(recall)


class FeatureClassifier(nn.Module):
    """A small convolutional classifier whose penultimate layer gives the features (FEATURES wide)."""

    def __init__(self, input_shape: tuple[int, int, int], classes: int):
        super().__init__()
        channels, height, width = input_shape
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (height // 4) * (width // 4), FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


def train_classifier(images: Tensor, labels: Tensor, classes: int, *, epochs: int = 2, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0) -> FeatureClassifier:
    """Fit a FeatureClassifier on float images [N, C, H, W] in [0, 1] with int64 labels [N]."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureClassifier(tuple(images.shape[1:]), classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images) - batch_size + 1, batch_size):
            chosen = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(images[chosen]), labels[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def features(classifier: FeatureClassifier, images: Tensor, batch_size: int = 1000) -> Tensor:
    return torch.cat([classifier.features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def accuracy(classifier: FeatureClassifier, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    hits = sum(int((classifier(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum())
               for i in range(0, len(images), batch_size))
    return hits / len(images)


def sample_quality(classifier: FeatureClassifier, real: Tensor, samples: Tensor, k: int = NEIGHBOURS) -> dict[str, float]:
    """Frechet distance in the classifier's features, precision and recall of `samples` against `real`."""
    real_features, sample_features = features(classifier, real), features(classifier, samples)
    precision, recall = precision_recall(real_features, sample_features, k)
    return {"frechet_distance": frechet_distance(real_features, sample_features),
            "precision": precision, "recall": recall}
