"""Captum gradient family: properties of the methods, target handling, batching, clear errors."""

import warnings

import numpy as np
import pytest
import torch

from nets_explainers import TinyCNN, TinyHybrid, TinyMLP, inputs, loaded, small_hybrid
from tolerances import assert_close, assert_identical, is_close, tolerance
from xaicore.errors import XaiError
from xaicore.explaining.api import explain
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry

T = 32


@pytest.fixture(scope="module")
def hybrid() -> LoadedModel:
    """The built-in hybrid, small, briefly trained so that its outputs depend on the inputs."""
    model = small_hybrid(T, mean=[0.1, -0.2], std=[1.0, 2.0])
    net = model.network
    X = torch.from_numpy(inputs(64, T, seed=11))
    y = (X[:, :8, 0].mean(1) > 0).long() + (X[:, :8, 1].mean(1) > 0).long()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    net.train()
    for _ in range(40):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        optimizer.step()
    net.eval()
    return model


def input_gradient(model: LoadedModel, X: np.ndarray, targets) -> np.ndarray:
    """Autograd's gradient of each sample's target logit with respect to its input."""
    x = torch.from_numpy(X).requires_grad_(True)
    out = model.module(x)
    out.gather(1, torch.as_tensor(targets)[:, None]).sum().backward()
    return x.grad.numpy()


@pytest.mark.parametrize("baseline, n_steps", [("zero", 512), ("mean", 512), ("blurred", 2048),
                                               ("random", 2048)])
def test_integrated_gradients_completeness_on_the_hybrid(hybrid, baseline, n_steps):
    X, background = inputs(2, T), inputs(30, T, seed=5)
    # ReLU and max-pooling kinks make the path integrand non-smooth: it takes many steps
    # (trapezoid: numpy's Gauss-Legendre nodes for thousands of steps take longer than the model).
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the 1% delta warning must not fire
        e = explain(hybrid, X, method="integrated-gradients", n_steps=n_steps, baseline=baseline,
                    integration_method="riemann_trapezoid",
                    background=background)
    difference = e.extras["output_difference"]
    assert np.abs(difference).min() > 1e-2  # the check below is not vacuous
    # completeness within the quadrature's 1% (the explainer's own warning threshold), per sample
    sums = e.attributions.astype(np.float64).sum((1, 2))
    gap = np.abs(sums - difference)
    assert (gap <= 0.01 * np.abs(difference) + tolerance(difference)).all(), gap / difference
    # a difference of values of the outputs' scale
    assert_close(e.extras["convergence_delta"], sums - difference,
                 scale=float(np.abs(difference).max()))
    assert "warnings" not in e.extras


def test_integrated_gradients_delta_shrinks_with_more_steps(hybrid):
    X = inputs(4, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        coarse, fine = (explain(hybrid, X, method="integrated-gradients", n_steps=n,
                                integration_method="riemann_trapezoid") for n in (8, 256))
    deltas = [np.abs(e.extras["convergence_delta"]).sum() for e in (fine, coarse)]
    assert deltas[0] < deltas[1] / 4


def test_integrated_gradients_warns_when_delta_is_large(hybrid):
    with pytest.warns(RuntimeWarning, match="convergence delta exceeds 1%"):
        e = explain(hybrid, inputs(3, T), method="integrated-gradients", n_steps=2,
                    integration_method="riemann_left", baseline="random")
    assert e.extras["warnings"] and "convergence delta" in e.extras["warnings"][0]


def test_saliency_equals_the_autograd_input_gradient_for_each_target(hybrid):
    X = inputs(6, T)
    targets = np.array([0, 1, 2, 2, 1, 0])
    grad = input_gradient(hybrid, X, targets)
    signed = explain(hybrid, X, method="saliency", target=targets, abs=False)
    assert_close(signed.attributions, grad)
    assert_close(explain(hybrid, X, method="saliency", target=targets).attributions, np.abs(grad))
    ixg = explain(hybrid, X, method="input-x-gradient", target=targets)
    assert_close(ixg.attributions, X * grad)
    assert list(signed.targets) == list(targets)


def test_smoothgrad_without_noise_is_saliency_and_noise_changes_it(hybrid):
    X = inputs(3, T)
    sal = explain(hybrid, X, method="saliency", target=1).attributions
    quiet = explain(hybrid, X, method="smoothgrad", target=1, noise_level=0.0, n_samples=3)
    assert_close(quiet.attributions, sal)
    noisy = explain(hybrid, X, method="smoothgrad", target=1, noise_level=0.5, n_samples=4)
    assert not is_close(noisy.attributions, sal, rtol=1e-3)
    chunked = explain(hybrid, X, method="smoothgrad", target=1, noise_level=0.5, n_samples=4,
                      internal_batch_size=3)  # one noisy copy of the batch per pass
    assert_close(chunked.attributions, noisy.attributions)


@pytest.mark.parametrize("method", ["integrated-gradients", "saliency", "smoothgrad"])
def test_batched_result_equals_per_sample_results(hybrid, method):
    X = inputs(4, T)
    options = {"n_steps": 16} if method == "integrated-gradients" else {}
    if method == "smoothgrad":
        options = {"noise_level": 0.0, "n_samples": 2}
    batched = explain(hybrid, X, method=method, target=2, **options).attributions
    single = np.concatenate([explain(hybrid, X[i:i + 1], method=method, target=2,
                                     **options).attributions for i in range(len(X))])
    assert_close(batched, single)


def test_deeplift_is_complete_on_a_relu_cnn_and_refuses_recurrent_models(hybrid):
    cnn = loaded(TinyCNN, n_features=2, seq_len=T)
    X = inputs(4, T)
    e = explain(cnn, X, method="deeplift", baseline="blurred")
    # exact for the rescale rule: float32 error of the outputs' scale
    difference = e.extras["output_difference"]
    assert_close(e.attributions.sum((1, 2)), difference, scale=float(np.abs(difference).max()))
    with pytest.raises(XaiError, match=r"deeplift cannot explain model 'cnn-lstm-attention'.*LSTM"):
        explain(hybrid, X, method="deeplift")


def test_gradient_shap_uses_the_background_and_is_seeded(hybrid):
    X, background = inputs(3, T), inputs(40, T, seed=7)
    with pytest.raises(XaiError, match="gradient-shap needs training data"):
        explain(hybrid, X, method="gradient-shap")
    a = explain(hybrid, X, method="gradient-shap", background=background, n_samples=8, seed=3)
    b = explain(hybrid, X, method="gradient-shap", background=background, n_samples=8, seed=3)
    assert_identical(a.attributions, b.attributions)  # same seed, same draws, same batches
    logits = hybrid.logits(background)[:, a.targets]
    assert_close(a.extras["expected_value"], logits.mean(0))
    assert "background" not in a.options  # arrays are not stored as options


def test_bad_input_gives_clear_errors(hybrid):
    X = inputs(2, T)
    with pytest.raises(XaiError, match="saliency has no option 'nsteps'.*abs"):
        explain(hybrid, X, method="saliency", nsteps=3)
    with pytest.raises(XaiError, match="unknown explainer 'saliancy'.*Installed:.*saliency"):
        explain(hybrid, X, method="saliancy")
    with pytest.raises(XaiError, match="class index 7 is out of range.*3 classes"):
        explain(hybrid, X, method="saliency", target=7)
    bad = X.copy()
    bad[1, 4, 0] = np.nan
    with pytest.raises(XaiError, match="NaN or infinite.*sample 1"):
        explain(hybrid, bad, method="integrated-gradients")
    with pytest.raises(XaiError, match="unknown integration_method 'simpson'"):
        explain(hybrid, X, method="integrated-gradients", integration_method="simpson")
    with pytest.raises(XaiError, match="unknown baseline 'ones'.*zero, mean, blurred, random"):
        explain(hybrid, X, method="integrated-gradients", baseline="ones")
    with pytest.raises(XaiError, match="baseline 'mean' needs training data"):
        explain(hybrid, X, method="integrated-gradients", baseline="mean")
    with pytest.raises(XaiError, match="background must be .*got shape"):
        explain(hybrid, X, method="integrated-gradients", baseline="mean",
                background=np.zeros((5, T + 1, 2)))


def test_methods_work_on_models_without_convolution_or_recurrence():
    for cls in (TinyMLP, TinyHybrid):
        model = loaded(cls, n_features=2, seq_len=T)
        e = explain(model, inputs(2, T), method="input-x-gradient")
        assert e.attributions.shape == (2, T, 2) and np.isfinite(e.attributions).all()


@pytest.mark.parametrize("integration", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_batched_path_equals_captum_integrated_gradients(integration):
    from captum.attr import IntegratedGradients

    model = loaded(TinyHybrid, n_features=2, seq_len=T)
    X, targets = inputs(5, T), np.array([0, 1, 2, 1, 0])
    x = torch.from_numpy(X)
    reference = IntegratedGradients(model.module).attribute(
        x, baselines=torch.zeros_like(x), target=torch.from_numpy(targets), n_steps=20,
        method=integration).detach().numpy()
    for chunk in (None, 17, 10**6):  # automatic, 3 steps of the batch per pass, all at once
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            e = explain(model, X, method="integrated-gradients", target=targets, n_steps=20,
                        integration_method=integration, internal_batch_size=chunk)
        assert_close(e.attributions, reference)


def test_deeplift_refuses_models_with_attention_of_their_own():
    net = registry.get_model("transformer")(2, T, 3, n_layers=1, d_model=16, n_heads=2, d_ff=16)
    model = LoadedModel(net, name="transformer", class_names=["a", "b", "c"],
                        feature_names=["x", "y"], seq_len=T)
    with pytest.raises(XaiError, match="deeplift cannot explain model 'transformer'.*attention"):
        explain(model, inputs(2, T), method="deeplift")


def test_deeplift_reports_broken_completeness_instead_of_hiding_it():
    """A functional nonlinearity (torch.tanh in forward) gets no DeepLIFT rule: the delta says so."""

    class FunctionalTanh(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(T * 2, 3)

        def forward(self, x):
            return self.lin(torch.tanh(3 * x).flatten(1))

    torch.manual_seed(0)
    model = LoadedModel(FunctionalTanh(), name="functional", class_names=["a", "b", "c"],
                        feature_names=["x", "y"], seq_len=T)
    with pytest.warns(RuntimeWarning, match="deeplift: convergence delta exceeds 1%"):
        e = explain(model, inputs(3, T), method="deeplift", target=0)
    assert e.extras["warnings"]


def test_integrated_gradients_auto_steps_close_the_completeness_gap(gunpoint_run):
    """The default n_steps="auto" raises each sample's rule until sum(attr) is within 1% of
    F(x) - F(0), checked here with the model's own outputs; samples that converge at 33 or 65
    points have the attributions of that rule alone."""
    import xaicore
    from xaicore.data.loading import load_dataset

    model = xaicore.load_run(gunpoint_run, "cpu")
    X = load_dataset({"name": "GunPoint"}).test.X[:48]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no sample is left above 1%
        e = explain(model, X, method="integrated-gradients")
    with torch.no_grad():
        x = torch.from_numpy(X)
        fx = model.module(x).gather(1, torch.from_numpy(e.targets)[:, None])[:, 0].numpy()
        f0 = model.module(torch.zeros_like(x)).gather(1, torch.from_numpy(e.targets)[:, None])[
            :, 0].numpy()
    gap = np.abs(e.attributions.astype(np.float64).sum((1, 2)) - (fx - f0))
    assert (gap <= 0.01 * np.abs(fx - f0) + 1e-5).all(), gap / np.abs(fx - f0)
    steps = e.extras["n_steps"]
    assert set(np.unique(steps)) <= {33, 65, 129, 257, 513, 1025}
    for points in (33, 65):  # the nested sums equal each Clenshaw-Curtis rule computed alone
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fixed = explain(model, X, method="integrated-gradients", n_steps=points)
        here = steps == points
        assert here.any()
        assert_close(e.attributions[here], fixed.attributions[here],
                     scale=float(np.abs(fixed.attributions).max()))


def test_clenshaw_curtis_rules_are_exact_on_polynomials_and_nest():
    from xai_captum.integrated import clenshaw_curtis

    for points in (2, 3, 4, 9, 33, 65, 1025):
        nodes, weights = clenshaw_curtis(points)
        assert nodes[0] == 0 and nodes[-1] == pytest.approx(1) and np.all(np.diff(nodes) > 0)
        for degree in range(min(points, 40)):  # degree n = points - 1 integrates exactly
            assert weights @ nodes ** degree == pytest.approx(1 / (degree + 1), abs=1e-12)
    coarse, fine = clenshaw_curtis(33)[0], clenshaw_curtis(65)[0]
    np.testing.assert_allclose(fine[::2], coarse, atol=1e-15)


def test_nested_rules_give_the_same_attributions_in_any_pass_or_memory_split(monkeypatch):
    """Samples explained a few at a time (little memory) or a few path points per pass give the
    attributions and step counts of one whole batch."""
    from xai_captum import integrated

    model = loaded(TinyHybrid, n_features=2, seq_len=T)
    X = inputs(7, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        whole = explain(model, X, method="integrated-gradients")
        few_points = explain(model, X, method="integrated-gradients", internal_batch_size=5)
        monkeypatch.setattr(integrated, "rows_that_fit", lambda *args: 3)
        few_samples = explain(model, X, method="integrated-gradients")
    assert len(set(whole.extras["n_steps"].tolist())) > 1  # samples took different rules
    for other in (few_points, few_samples):
        assert_close(other.attributions, whole.attributions)
        np.testing.assert_array_equal(other.extras["n_steps"], whole.extras["n_steps"])


# ---------- users' own baselines ----------

def own_baseline(n: int | None = None) -> np.ndarray:
    """A baseline of the user's: one smooth series ``[T, 2]``, or ``n`` of them."""
    series = inputs(1 if n is None else n, T, seed=23) * 0.5
    return series[0] if n is None else series


@pytest.mark.parametrize("shared", [True, False])
def test_integrated_gradients_is_complete_against_a_users_baseline(hybrid, shared):
    X = inputs(3, T)
    baseline = own_baseline() if shared else own_baseline(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the 1% delta warning must not fire
        e = explain(hybrid, X, method="integrated-gradients", n_steps=2048, baseline=baseline,
                    integration_method="riemann_trapezoid")
    per_sample = np.broadcast_to(baseline, X.shape)
    # the model's real outputs for the inputs and for this baseline, not the explainer's own
    difference = (hybrid.logits(X)[np.arange(3), e.targets]
                  - hybrid.logits(np.array(per_sample))[np.arange(3), e.targets])
    assert np.abs(difference).min() > 1e-2  # the check below is not vacuous
    sums = e.attributions.astype(np.float64).sum((1, 2))
    gap = np.abs(sums - difference)
    assert (gap <= 0.01 * np.abs(difference) + tolerance(difference)).all(), gap / difference
    assert_close(e.extras["output_difference"], difference, scale=float(np.abs(difference).max()))


@pytest.mark.parametrize("method", ["integrated-gradients", "deeplift", "gradient-shap"])
def test_a_baseline_equal_to_the_inputs_gives_zero_attributions(method):
    model = loaded(TinyCNN, n_features=2, seq_len=T)
    X = inputs(4, T)
    e = explain(model, X, method=method, baseline=X.copy(), background=inputs(8, T, seed=3))
    # every method multiplies by (x - baseline): exactly zero, not just small
    assert e.attributions.shape == X.shape and not e.attributions.any()


@pytest.mark.parametrize("method", ["integrated-gradients", "deeplift", "gradient-shap"])
def test_a_shared_baseline_equals_it_repeated_for_every_sample(method):
    model = loaded(TinyCNN, n_features=2, seq_len=T)
    X, baseline = inputs(4, T), own_baseline()
    shared = explain(model, X, method=method, baseline=baseline)
    repeated = explain(model, X, method=method, baseline=np.repeat(baseline[None], 4, axis=0))
    # the shared series is repeated per sample before the method runs: the same computation
    assert_identical(shared.attributions, repeated.attributions)
    assert not is_close(shared.attributions, explain(model, X, method=method,
                                                     baseline="zero" if method != "gradient-shap"
                                                     else own_baseline(4)).attributions)


def test_a_users_baselines_give_what_captum_gives_with_those_baselines():
    from captum.attr import IntegratedGradients

    model = loaded(TinyHybrid, n_features=2, seq_len=T)
    X, targets, baseline = inputs(5, T), np.array([0, 1, 2, 1, 0]), own_baseline(5)
    reference = IntegratedGradients(model.module).attribute(
        torch.from_numpy(X), baselines=torch.from_numpy(baseline),
        target=torch.from_numpy(targets), n_steps=20, method="gausslegendre").detach().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 20 steps: a delta warning is expected
        e = explain(model, X, method="integrated-gradients", target=targets, n_steps=20,
                    integration_method="gausslegendre", baseline=torch.from_numpy(baseline))
    assert_close(e.attributions, reference)


def test_gradient_shap_from_a_users_baseline_is_exact_on_a_linear_model():
    class Linear(torch.nn.Module):
        def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(n_features * seq_len, n_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.reshape(len(x), -1))

    model = loaded(Linear, n_features=2, seq_len=T)
    X, baseline, targets = inputs(3, T), own_baseline(3), np.array([2, 0, 1])
    e = explain(model, X, method="gradient-shap", baseline=baseline, target=targets, n_samples=5)
    # the gradient of a linear model is its weight (divided by the normalisation's std) at every
    # point of every path, so every draw gives (x - b) * gradient
    weight = model.network.fc.weight.detach().numpy().reshape(3, T, 2) / np.linspace(1.0, 2.0, 2)
    assert_close(e.attributions, (X - baseline) * weight[targets])
    logits = model.logits(baseline)[np.arange(3), targets]
    assert_close(e.extras["expected_value"], logits)


def test_bad_baselines_are_one_line_errors_naming_the_expected_shape():
    model = loaded(TinyCNN, n_features=2, seq_len=T)
    X = inputs(4, T)
    inside = own_baseline()
    inside[3, 1] = np.nan
    cases = [(np.zeros(T), r"must be \[time, feature\] = \(32, 2\) shared by every sample or "
                           r"\[sample, time, feature\] = \(4, 32, 2\); got shape \(32,\)"),
             (np.zeros((3, T, 2)), r"= \(4, 32, 2\); got shape \(3, 32, 2\)"),
             (np.zeros((T, 3)), r"got shape \(32, 3\)"),
             (np.zeros((1, 4, T, 2)), r"must be \[time, feature\].*got shape \(1, 4, 32, 2\)"),
             (np.full((T, 2), "a"), "must be a real-valued array, not dtype <U1"),
             (inside, "holds NaN or infinite values inside the series"),
             ("ones", "unknown baseline 'ones'; it must be one of zero, mean, blurred, random, pad, "
                      "mask, unk, an array"),
             # a kind of another kind of input: the model's own kind names its baselines
             ("pad", "unknown baseline 'pad'; choose one of zero, mean, blurred, random"),
             ("missing.npy", "no file 'missing.npy'")]
    for method in ("integrated-gradients", "deeplift", "gradient-shap"):
        for baseline, message in cases:
            if method == "gradient-shap" and isinstance(baseline, str) and baseline in ("ones", "pad"):
                message = f"unknown baseline '{baseline}'; it must be one of background, an array"
            with pytest.raises(XaiError, match=message) as caught:
                explain(model, X, method=method, baseline=baseline)
            assert "\n" not in str(caught.value)
