"""Registers the attention-weights explainer."""

from xaicore.plugin import hookimpl


@hookimpl
def register_explainers(register):
    register("attention", "xai_attention.explainer:AttentionExplainer",
             description="Attention weights of the last forward pass (per head, mean, rollout)")
