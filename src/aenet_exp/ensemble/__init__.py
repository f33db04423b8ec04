"""Committees made from finished runs (``python -m aenet_exp ensemble``)."""
