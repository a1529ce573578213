"""Project settings; see https://docs.kedro.org/en/stable/configure/configuration_basics/."""

from omegaconf.resolvers import oc

from anomaly_lens.context import ProjectContext
from anomaly_lens.hooks import (
    ParameterCheckHook,
    ReadOnlyEntriesHook,
    ReportLoggingHook,
    RunTagsHook,
)
from anomaly_lens.ml.serving.requirements import pinned_requirements

HOOKS = (ParameterCheckHook(), RunTagsHook(), ReportLoggingHook(), ReadOnlyEntriesHook())

# Decides per env whether `kedro run` starts by generating the demo data (see the class).
CONTEXT_CLASS = ProjectContext

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local (or another env) overrides single keys instead of whole top-level blocks.
    # ${oc.env:...} lets MLFLOW_TRACKING_URI override the tracking URI in mlflow.yml;
    # ${pinned_requirements:} is what the served model's environment installs.
    "custom_resolvers": {"oc.env": oc.env, "pinned_requirements": pinned_requirements},
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
}
