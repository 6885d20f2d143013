"""Training runs: the run directory and its files (``directory``), wrapping and loading a model and its
checkpoint (``model``), training a registered model on a dataset into a run (``training``) and
predicting with a run's model (``predicting``).
"""
