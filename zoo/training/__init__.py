"""The generic phase trainer, checkpoints, EMA, logging and process-group plumbing."""
from zoo.training.checkpoint import CheckpointError
from zoo.training.distributed import exit_process
from zoo.training.trainer import NonFiniteLossError, Trainer

__all__ = ["CheckpointError", "NonFiniteLossError", "Trainer", "exit_process"]
