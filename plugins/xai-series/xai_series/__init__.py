"""xai's first kind of input: time series ``[sample, time, feature]``."""
