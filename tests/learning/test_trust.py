"""The trust window sorts σ into accurate / candidate / failed at its two levels."""

import numpy as np
import pytest

from aenet_exp.learning.trust import TrustWindow


def test_levels_split_accurate_candidate_failed():
    window = TrustWindow(0.05, 0.3)
    sigma = np.array([0.0, 0.0499, 0.05, 0.2, 0.2999, 0.3, 4.0, np.nan, np.inf])
    assert window.classify(sigma).tolist() == [
        "accurate", "accurate", "candidate", "candidate", "candidate", "failed", "failed", "failed", "failed"]
    assert window.fractions(sigma) == pytest.approx({"accurate": 2 / 9, "candidate": 3 / 9, "failed": 4 / 9})


def test_no_frames_give_nan_fractions():
    assert all(np.isnan(v) for v in TrustWindow(0.1, 0.2).fractions(np.zeros(0)).values())


@pytest.mark.parametrize("low, high", [(0.3, 0.3), (0.4, 0.3), (-0.1, 0.3)])
def test_levels_out_of_order_are_refused(low, high):
    with pytest.raises(ValueError, match="0 <= low < high"):
        TrustWindow(low, high)
