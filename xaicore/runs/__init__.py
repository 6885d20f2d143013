"""Training runs: the run directory and its files (``directory``), training a registered model on
a dataset into a run (``training``), predicting with a run's model (``predicting``) and making a
user's own trained network into a run (``importing``).
"""
