"""Among the candidates, which to label: the most uncertain first, then each next the one farthest from those
already chosen (farthest-point sampling on the structures' mean descriptor vectors), so one hot trajectory does not
fill a generation with near-copies of one configuration."""

from __future__ import annotations

import numpy as np

DIVERSITY_RULES = ("none", "farthest_point")


def most_uncertain(sigma: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest ``sigma`` ``(n_candidates,)``, largest first (ties in the given order)."""
    return np.argsort(-np.asarray(sigma, dtype=float), kind="stable")[:n]


def farthest_points(features: np.ndarray, sigma: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices of ``features`` ``(n_candidates, n_features)``: the largest ``sigma`` first, then repeatedly the
    candidate whose Euclidean distance to the nearest chosen one is largest (ties: the larger σ, then the first).
    Linear in the candidates per pick."""
    features = np.asarray(features, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    count = min(n, len(features))
    if count == 0:
        return np.zeros(0, dtype=int)
    by_sigma = most_uncertain(sigma, len(sigma))  # tie-break order
    rank = np.empty(len(sigma), dtype=int)
    rank[by_sigma] = np.arange(len(sigma))
    chosen = [int(by_sigma[0])]
    nearest = np.linalg.norm(features - features[chosen[0]], axis=1)
    nearest[chosen[0]] = -1.0  # never chosen twice, even among identical candidates
    for _ in range(count - 1):
        best = int(np.lexsort((rank, -nearest))[0])  # largest distance, then the most uncertain
        chosen.append(best)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[best], axis=1))
        nearest[chosen] = -1.0
    return np.array(chosen, dtype=int)


def choose(rule: str, sigma: np.ndarray, features: np.ndarray | None, n: int) -> np.ndarray:
    """The candidates to label under ``rule`` (:data:`DIVERSITY_RULES`): ``none`` takes the ``n`` most uncertain."""
    if not len(sigma):
        return np.zeros(0, dtype=int)
    if rule == "none":
        return most_uncertain(sigma, n)
    if rule == "farthest_point":
        return farthest_points(features, sigma, n)
    raise ValueError(f"unknown diversity rule {rule!r}; expected one of {list(DIVERSITY_RULES)}")
