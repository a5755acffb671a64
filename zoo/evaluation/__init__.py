"""Evaluation: pure metric functions (`functional`) and registered metric wrappers, one file per metric family.
Importing this package imports every module in it, which registers the metrics in `zoo.registry.METRICS`.

Public: `EvalContext` (a source and its sample / real-data streams), `evaluate(ctx, names)`, `lpips_distance`,
`MetricResult`. Protocols: docs/metrics.md.
"""
from zoo.registry import import_submodules

import_submodules(__name__)

from zoo.evaluation.core import (EvaluationError, MetricNotApplicable, MetricResult, MetricSpec,  # noqa: E402
                                 WeightsNotFoundError)
from zoo.evaluation.perceptual import lpips_distance  # noqa: E402
from zoo.evaluation.sampling import EvalContext  # noqa: E402

__all__ = ["EvalContext", "EvaluationError", "MetricNotApplicable", "MetricResult", "MetricSpec",
           "WeightsNotFoundError", "lpips_distance"]
