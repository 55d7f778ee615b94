"""`convnet.checkpoint` for users' imports: checkpoint files and metrics.jsonl live in
convnet/training/checkpoint.py now. New code imports from convnet.training.checkpoint."""
from .training.checkpoint import (FORMAT, METRICS_FILE, TEMP_MARK, CheckpointError, MetricsLog,
                                  checkpoint_paths, has_committed_checkpoints, load_checkpoint,
                                  load_latest_checkpoint, read_metrics, save_checkpoint)

__all__ = ["FORMAT", "METRICS_FILE", "TEMP_MARK", "CheckpointError", "MetricsLog",
           "checkpoint_paths", "has_committed_checkpoints", "load_checkpoint",
           "load_latest_checkpoint", "read_metrics", "save_checkpoint"]
