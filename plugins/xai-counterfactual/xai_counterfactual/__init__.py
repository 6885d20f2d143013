"""Counterfactual explanations of series classifiers: what would have to change for another class."""
