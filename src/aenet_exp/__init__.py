"""aenet_exp: ænet-style Chebyshev-descriptor potentials in PyTorch, run as tracked experiments."""

__version__ = "0.1.0"
