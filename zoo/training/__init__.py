"""The generic phase trainer, checkpoints, EMA and logging."""
from zoo.training.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from zoo.training.trainer import NonFiniteLossError, Trainer, exit_process

__all__ = ["Checkpoint", "CheckpointError", "NonFiniteLossError", "Trainer", "exit_process", "load_checkpoint"]
