"""Choosing new DFT work: pool structures ranked by a committee's disagreement (``python -m aenet_exp select``)."""
