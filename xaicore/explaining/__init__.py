"""Explaining a model: the ``BaseExplainer`` every explainer builds on (``base``), the ``Explanation``
result type (``explanation``), the public ``xaicore.explain`` (``api``), explaining the samples of a
run in memory (``runs``) or streamed through an engine in batches (``streaming``) into a result
store on disk (``store``), and the summaries written next to the results (``summaries``).

(The package is ``explaining``, not ``explain``: ``xaicore.explain`` is the public function.)
"""
