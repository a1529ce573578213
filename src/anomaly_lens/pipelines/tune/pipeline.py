"""The ``tune`` pipeline (by name only): an Optuna study on the train/val splits, its summary,
plots and the best parameters as a YAML file for ``conf/local``."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.tune.nodes import report_study, tune_hyperparameters


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                tune_hyperparameters,
                inputs=["image_cache", "splits", "params:tune", "params:train", "params:binary"],
                outputs="tuning_study",
                name="tune_hyperparameters",
            ),
            Node(
                report_study,
                inputs=["tuning_study", "params:tune"],
                outputs=[
                    "tune_summary",
                    "tune_trials",
                    "tune_best_parameters",
                    "tune_history_plot",
                    "tune_mlflow_metrics",
                ],
                name="report_study",
            ),
        ]
    )
