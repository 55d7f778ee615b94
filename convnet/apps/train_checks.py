"""convnet-train's checks of what it is asked to do, made before any data is read or any array
is allocated: the options (ranges, the files and folders they name), and the net's data and
cost layers (memory.py checks the memory it needs at --mini; run_folder.py the run folder).
Each check lives here once; a failure is one line (ValueError or ConfigError, exit 2)."""
import os

from ..engine.config import ConfigError
from ..training.run_folder import check_folder_to_write

SEED_LIMIT = 2 ** 63  # seeds are stored in checkpoints and drawn from as int64
DATA_INDICES = {0: "the images", 1: "the labels"}  # what every provider gives a data layer


def check_options(args):
    """The numeric options' ranges and the paths the run will write, before anything runs."""
    if args.seed is not None and not 0 <= args.seed < SEED_LIMIT:
        raise ValueError(f"--seed must be in 0..2^63-1, got {args.seed}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1 (the total number of epochs), got {args.epochs}")
    if args.mini < 1:
        raise ValueError(f"--mini must be >= 1, got {args.mini}")
    if args.test_freq < 0:
        raise ValueError(f"--test-freq must be >= 0 (0: test after each epoch), got "
                         f"{args.test_freq}")
    if not args.save_interval >= 0:
        raise ValueError(f"--save-interval must be >= 0 seconds, got {args.save_interval}")
    if not args.log_interval >= 0:
        raise ValueError(f"--log-interval must be >= 0 seconds, got {args.log_interval}")
    if args.feature_path is not None:
        check_folder_to_write(args.feature_path, "--feature-path")
    if args.test_out is not None:
        check_file_to_write(args.test_out, "--test-out")


def check_file_to_write(path, option):
    """`path` names a file in an existing, writable folder (not a folder itself)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a folder, not a file name")
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the folder {folder} is not writable")


def _type(sec):
    entry = sec.entries.get("type")
    return entry.value if entry is not None else None


def check_net_sections(sections, logreg_name, layers_file):
    """A net convnet-train can run: every data layer's dataIdx is one the providers give, and
    there is a cost.logreg layer to report errors with (the one --logreg-name names)."""
    for sec in sections.values():
        if _type(sec) != "data" or "dataIdx" not in sec.entries:
            continue
        try:
            index = int(sec.entries["dataIdx"].value)
        except ValueError:
            continue  # the layer's own parser reports it
        if index not in DATA_INDICES:
            given = ", ".join(f"{i}: {what}" for i, what in DATA_INDICES.items())
            raise sec.error(f"dataIdx={index}: the data providers give {given}", "dataIdx")
    logreg = [name for name, sec in sections.items() if _type(sec) == "cost.logreg"]
    if logreg_name is not None:
        if logreg_name not in logreg:
            kind = _type(sections[logreg_name]) if logreg_name in sections else None
            what = f"a {kind} layer" if kind else "not a layer of the net"
            raise ValueError(f"--logreg-name {logreg_name}: {what}, not a cost.logreg layer "
                             f"(the net's: {', '.join(logreg) or 'none'})")
    elif not logreg:
        last = list(sections.values())[-1]
        raise ConfigError("the net has no cost.logreg layer (convnet-train reports its errors "
                          "and trains on its cost; the last layer is here)", layers_file,
                          last.line)


def check_classes(net, provider, cost_name):
    """The cost layer's softmax has as many outputs as the data has classes (more: classes no
    image has, whose names --show-preds could not show; fewer: labels out of range)."""
    cost = net[cost_name]
    classes = getattr(provider, "num_classes", None)
    if classes is not None and cost.classes != classes:
        raise cost.error(f"its input '{cost.inputs[1]}' has {cost.classes} outputs, but the "
                         f"data set {provider.name} has {classes} classes", "inputs")
