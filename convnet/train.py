"""`convnet.train` for users' imports: the training loop lives in convnet/training/train.py now,
and what a checkpoint holds (param_arrays, restore_arrays, check_checkpoint) in
convnet/training/saved_run.py. New code imports from convnet.training."""
from .training.saved_run import check_checkpoint, param_arrays, restore_arrays
from .training.train import (WEIGHT_CHECK_EVERY, StopRequest, Trainer, TrainingStopped, evaluate,
                             evaluate_probabilities)

__all__ = ["WEIGHT_CHECK_EVERY", "StopRequest", "Trainer", "TrainingStopped", "check_checkpoint",
           "evaluate", "evaluate_probabilities", "param_arrays", "restore_arrays"]
