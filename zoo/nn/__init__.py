"""Backbones and layers. Importing this package imports every module in it, which registers the backbones in
`zoo.registry.BACKBONES`."""
from zoo.registry import import_submodules

import_submodules(__name__)
