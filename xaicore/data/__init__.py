"""Datasets: the in-memory ``Dataset`` type laid out ``[sample, time, feature]`` with its splits
(``dataset``), and loading one from a spec stored in the checkpoint, a registered name served by a
dataset plugin, a CSV file or an ``.npz`` file (``loading``).
"""
