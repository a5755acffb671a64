"""Evaluation: pure metric functions and registered metric wrappers. Importing this package imports every module in
it, which registers the metrics in `zoo.registry.METRICS`."""
from zoo.registry import import_submodules

import_submodules(__name__)
