"""The failing parts (imported only when used)."""

from torch import nn

from xaicore.plugin import BaseExplainer


class _Base(nn.Module):
    default_params: dict = {}

    def __init__(self, n_features, seq_len, n_classes, **params):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x):
        return self.linear(x.mean(1))


class FaultyForward(_Base):
    def forward(self, x):
        raise ValueError("faulty forward")


class TupleOutput(_Base):
    def forward(self, x):
        return self.linear(x.mean(1)), None


class FaultyInit(_Base):
    def __init__(self, n_features, seq_len, n_classes, **params):
        raise KeyError("hidden")


class FaultyExplainer(BaseExplainer):
    name = "faulty-explainer"

    def attribute(self, model, inputs, target, **opts):
        raise ValueError("faulty attribute")


class FaultyEngine:
    name = "faulty-engine"

    def run(self, job, **options):
        raise RuntimeError("faulty engine")
        yield  # a generator, like the real engines


def load(name, **options):
    raise OSError("faulty data source")


class FaultyInitExplainer(BaseExplainer):
    name = "faulty-init-explainer"

    def __init__(self):
        raise RuntimeError("faulty explainer constructor")
