"""``padim``: a Gaussian of normal patch features at every position; a patch's score is
its Mahalanobis distance (anomalib's ``PadimModel``, Defard et al. 2020)."""

from __future__ import annotations

from anomalib.models.image.padim.torch_model import PadimModel

from anomaly_lens.ml.anomaly import Method, register_method, seeded
from anomaly_lens.ml.anomaly.weights import load_package_weights


@register_method("padim")
class Padim(Method):
    def create(self, backbone, layers, settings):
        with seeded(settings.seed):  # the random choice of feature channels
            model = PadimModel(
                backbone=backbone,
                layers=layers,
                pre_trained=False,
                n_features=settings.padim_features,
            )
        return load_package_weights(model, backbone)

    def finish_fit(self, model: PadimModel, settings) -> None:
        model.fit()
