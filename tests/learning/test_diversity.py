"""Which candidates to label: the most uncertain, or farthest-point sampling from the most uncertain."""

import numpy as np
import pytest

from aenet_exp.learning.diversity import choose, farthest_points, most_uncertain


def test_most_uncertain_first_ties_in_order():
    assert most_uncertain(np.array([0.1, 0.5, 0.3, 0.5]), 3).tolist() == [1, 3, 2]


def test_farthest_point_leaves_near_copies_of_the_first_pick():
    # three near-copies of one configuration (the most uncertain) and two distinct ones
    features = np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [5.0, 0.0], [0.0, 3.0]])
    sigma = np.array([0.9, 0.8, 0.85, 0.2, 0.1])
    assert farthest_points(features, sigma, 3).tolist() == [0, 3, 4]
    assert choose("none", sigma, features, 3).tolist() == [0, 2, 1]  # the near-copies, by σ alone


def test_farthest_point_by_hand():
    """After 0 (largest σ), the farthest from {0} is 3 (6 away); from {0, 3}, 2 is 2 away and 1 only 1."""
    features = np.array([[0.0], [1.0], [4.0], [6.0]])
    assert farthest_points(features, np.array([1.0, 0.0, 0.0, 0.0]), 4).tolist() == [0, 3, 2, 1]
    assert farthest_points(features, np.array([0.0, 0.0, 1.0, 0.0]), 2).tolist() == [2, 0]


def test_identical_candidates_are_never_chosen_twice():
    chosen = farthest_points(np.zeros((4, 3)), np.array([0.1, 0.4, 0.2, 0.3]), 4)
    assert chosen.tolist() == [1, 3, 2, 0]


def test_more_asked_than_there_are_and_none():
    assert farthest_points(np.eye(2), np.array([0.1, 0.2]), 5).tolist() == [1, 0]
    assert farthest_points(np.zeros((0, 2)), np.zeros(0), 5).tolist() == []
    with pytest.raises(ValueError, match="unknown diversity rule"):
        choose("kmeans", np.zeros(1), np.zeros((1, 1)), 1)
