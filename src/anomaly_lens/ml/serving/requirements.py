"""What an environment needs to load the served model: the project and each of its
runtime dependencies, pinned to the versions the model was made with.

Written out rather than left to MLflow's inference, which loads the model in a
subprocess (seconds per run) and records only the modules that loading imported (not
torch's companions that a prediction reaches later)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, requires, version

from packaging.requirements import Requirement

PROJECT = "anomaly-lens"


def pinned_requirements(distribution: str = PROJECT) -> list[str]:
    """``name[extras]==installed version`` for the distribution and its runtime
    requirements (not those of an extra such as ``dev``)."""
    pinned = [f"{distribution}=={version(distribution)}"]
    for line in requires(distribution) or []:
        requirement = Requirement(line)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        try:
            pinned.append(f"{requirement.name}{extras}=={version(requirement.name)}")
        except PackageNotFoundError as missing:
            raise PackageNotFoundError(
                f"{requirement.name}, a requirement of {distribution}, is not installed"
            ) from missing
    return pinned
