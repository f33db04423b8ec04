"""Active-learning campaigns (``python -m aenet_exp learn``): explore with the committee, sort what it found by the
committee's disagreement into a trust window, label the candidates with an oracle, retrain, until trusted."""
