"""Backbones and layers. Importing this package registers every backbone in `zoo.registry.BACKBONES`."""
from zoo.nn import dcgan, jsg, layers, mlp, resnet  # noqa: F401  (imported for their registrations)
