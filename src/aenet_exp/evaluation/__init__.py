"""How good a potential's predictions are: predictions of a data set (one engine for training, the calculator,
``ensemble`` and ``select``), pooled errors, a committee's uncertainty scores and calibration, prediction files.

Below training and tracking: imports ``model``, ``data``, ``errors`` and ``files`` only.
"""
