"""The generic phase trainer, checkpoints, EMA and logging."""
from zoo.training.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from zoo.training.trainer import NonFiniteLossError, Trainer, end_distributed

__all__ = ["Checkpoint", "CheckpointError", "NonFiniteLossError", "Trainer", "end_distributed", "load_checkpoint"]
