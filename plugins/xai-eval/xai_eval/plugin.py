"""Registers the evaluation metrics, the synthetic datasets and the TSR wrapper (nothing heavy imported)."""

from xaicore.plugin import hookimpl

SYNTHETIC = {
    "synthetic-middle": "a large box in the middle of time and features",
    "synthetic-small": "a small box in the middle",
    "synthetic-rare-time": "a few time steps across most features",
    "synthetic-rare-feature": "a few features across most time steps",
    "synthetic-moving": "a large box at a random place in every sample",
    "synthetic-one-channel": "the label carried by one known feature among distractors",
}

METRICS = {
    "deletion": ("xai_eval.perturbation:DeletionMetric",
                 "Deletion AUC (RISE): target probability as top cells are replaced; lower is better"),
    "insertion": ("xai_eval.perturbation:InsertionMetric",
                  "Insertion AUC (RISE): target probability as top cells are restored; higher is better"),
    "comprehensiveness": ("xai_eval.eraser:ComprehensivenessMetric",
                          "Comprehensiveness (ERASER, AOPC): probability drop without the top 1-50% "
                          "of cells; higher is better (default on texts)"),
    "sufficiency": ("xai_eval.eraser:SufficiencyMetric",
                    "Sufficiency (ERASER, AOPC): probability drop with only the top 1-50% of cells; "
                    "lower is better (default on texts)"),
    "road-morf": ("xai_eval.perturbation:RoadMorfMetric",
                  "ROAD MoRF (Rong 2022): noisy linear imputation, most relevant first; lower is better"),
    "road-lerf": ("xai_eval.perturbation:RoadLerfMetric",
                  "ROAD LeRF (Rong 2022): noisy linear imputation, least relevant first; higher is better"),
    "randomisation": ("xai_eval.randomisation:RandomisationMetric",
                      "Cascading model-parameter randomisation (Adebayo 2018): Spearman and SSIM of "
                      "|maps|, the verdict on |Spearman|; lower is better"),
    "aup": ("xai_eval.localisation:AUPMetric",
            "Area under saliency-weighted precision vs ground-truth mask (synthetic data)"),
    "aur": ("xai_eval.localisation:AURMetric",
            "Area under saliency-weighted recall vs ground-truth mask (synthetic data)"),
    "sensitivity-max": ("xai_eval.captum_metrics:SensitivityMaxMetric",
                        "captum sensitivity_max: explanation change under small perturbations; "
                        "lower is better (not in the default set: re-runs the explainer)"),
    "infidelity": ("xai_eval.captum_metrics:InfidelityMetric",
                   "captum infidelity under Gaussian perturbations; lower is better"),
}


@hookimpl
def register_metrics(register):
    for name, (target, description) in METRICS.items():
        register(name, target, description=description)


@hookimpl
def register_datasets(register):
    for name, description in SYNTHETIC.items():
        register(name, "xai_eval.synthetic:load",
                 description=f"Synthetic ground truth (Ismail et al. 2020): {description}")


@hookimpl
def register_explainers(register):
    register("tsr", "xai_eval.tsr:TemporalSaliencyRescaling",
             description="Temporal Saliency Rescaling around another explainer: tsr:<method>")


@hookimpl
def register_commands(cli):
    from xai_eval.commands import evaluate_cmd

    cli.add_command(evaluate_cmd)
