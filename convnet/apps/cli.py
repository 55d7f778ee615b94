"""`convnet-train LAYERS PARAMS [options]`: cuda-convnet's convnet.py, option for option."""
import os
import signal
import sys
import warnings

import numpy as np

from ..backend import PRECISIONS, resolve_backend_name
from ..data import CIFAR_IMAGE_SHAPE, DataError, make_provider, provider_image_shape
from ..engine.config import ConfigError, read_cfg, read_cfg_text
from ..engine.describe import describe, replicas_line
from ..engine.devices import parse_gpus
from ..engine.gradcheck import check_net_grads
from ..engine.net import Net
from ..engine.sections import data_shapes, declared_image_size, undeclared_data_shapes
from ..parallel import connect, on_gpu, split_rows
from ..training.checkpoint import CheckpointError, has_committed_checkpoints, load_latest_checkpoint
from ..training.distributed import share_checkpoint
from ..training.run_folder import (RunFolderError, RunLock, check_start, new_run_folder,
                                   os_error_line, start_line)
from ..training.saved_run import check_resumable, in_todays_meaning, run_config, saved_params
from ..training.progress import DEFAULT_LOG_INTERVAL, inform
from ..training.tensorboard import TensorBoardLogger
from ..training.train import Trainer, TrainingStopped, evaluate
from . import nets
from .features import write_features
from .memory import (OutOfMemory, ShapesOnlyNet, check_host_memory, is_out_of_memory,
                     out_of_memory_message)
from .ranks import crash, describe_world, fail, rank0_output, rank_gpus, say
from .options import CommandParser
from .train_checks import check_classes, check_net_sections, check_options

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 1      # NaN/Inf in training, or out of memory
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: a checkpoint was written first (128 + SIGINT)


def build_parser():
    p = CommandParser("convnet-train", "Train a convnet described by cuda-convnet's "
                      "layers.cfg and layer-params.cfg.")
    p.add_argument("files", nargs="*", metavar="LAYERS PARAMS",
                   help="layers.cfg and layer-params.cfg, or the name of a shipped net "
                        "(--list-nets) (with --load-file: PARAMS alone, or nothing to re-read "
                        "the params file the run was started with)")
    a = p.add_argument
    p.add_flag("--list-nets", "list the shipped nets and exit")
    a("--layer-def", metavar="LAYERS", default=None,
      help="cuda-convnet's spelling of the LAYERS argument")
    a("--layer-params", metavar="PARAMS", default=None,
      help="cuda-convnet's spelling of the PARAMS argument")
    p.add_data_provider("; cuda-convnet's cifar-cropped is cifar with --inner-size 32 - 2 x "
                        "--crop-border (24 unless --crop-border is given)")
    a("--data-path", default=None, help="the data set's folder")
    a("--save-path", default=None,
      help="run folder: checkpoints and metrics.jsonl (default: runs/NET-YYYYmmdd-HHMMSS in "
           "the current folder)")
    a("-f", "--load-file", default=None,
      help="resume from this run folder's newest checkpoint (-f: cuda-convnet's spelling)")
    a("--train-range", default=None, help="training batches, e.g. 1-5")
    a("--test-range", default=None, help="test batches, e.g. 6")
    a("--epochs", type=int, default=10, help="total epochs (a resumed run stops at this epoch)")
    a("--mini", type=int, default=128, help="minibatch size")
    a("--test-freq", type=int, default=0, help="test every N minibatches (0: each epoch)")
    a("--save-interval", type=float, default=600.0, help="checkpoint at least every N seconds")
    a("--log-interval", type=float, default=DEFAULT_LOG_INTERVAL, metavar="SECONDS",
      help="when the output is not a terminal (a log file, a cluster job): a progress line "
           "with the running cost and images/s every N seconds, instead of the bar")
    p.add_flag("--test-only", "test the net (--load-file's weights) on --test-range, then "
                              "exit")
    p.add_flag("--test-one", default=None,
               help="cuda-convnet's option (1 there by default) to test on one batch of "
                    "--test-range at a time; each test here scores every batch of --test-range, "
                    "which is the same for a one-batch range such as CIFAR's 6")
    p.add_backend()
    a("--precision", default="fp32", choices=PRECISIONS,
      help="the conv and local layers' products where their precision= is unset: fp32, or "
           "operands rounded to tf32 / bf16 as the tensor cores take them, FP32 sums (the cuda "
           "backend runs them on sm_80 and newer; numpy rounds the same way)")
    a("--gpu", default=None, help="the physical GPU of each logical device (layers' gpu=), e.g. "
                                  "0,1; 0,0 runs both on GPU 0 (cuda backend; numpy ignores it)")
    a("--seed", type=int, default=None, help="0 unless given; a resumed run keeps its own")
    a("--inner-size", type=int, default=None, help="random crops of this size (centre at test)")
    a("--crop-border", type=int, default=None,
      help="cuda-convnet's cifar-cropped crop: --inner-size 32 - 2 x N on CIFAR (its default "
           "4: random 24x24 crops, each flipped with probability 1/2, the centre crop at test, "
           "the centre crop of the mean image subtracted; exactly what --inner-size 24 does)")
    a("--logreg-name", default=None, help="the cost.logreg layer that reports errors")
    p.add_flag("--multiview-test",
               help="test on 10 views of each image (4 corners + centre, and their mirrors), the "
                    "softmax averaged, as the paper")
    a("--test-out", default=None, help="save the test probabilities (float32 N x classes, "
                                       "averaged over views) to FILE.npy, labels to "
                                       "FILE.labels.npy")
    a("--color-noise", type=float, default=None,
      help="image provider: sigma of the PCA colour lighting (default 0.1, the paper's)")
    p.add_flag("--check-grads", "numeric gradient check of the whole net in float64, then exit")
    p.add_flag("--describe",
               help="list the layers, shapes and parameters, then exit (the data provider gives "
                    "the shapes data layers do not declare; no image is read)")
    a("--conv-to-local", default=None, help="comma-separated conv layers to turn into local")
    a("--unshare-weights", default=None, help="synonym of --conv-to-local (cuda-convnet)")
    a("--write-features", metavar="LAYER", default=None,
      help="write LAYER's test-mode outputs over the --test-range images (e.g. --test-range 1-6 "
           "for Fashion-MNIST's training images) to --feature-path, then exit")
    a("--feature-path", default=None, help="folder for --write-features (features.npy, "
      "labels.npy, meta.json)")
    a("--tensorboard", metavar="DIR", default=None,
      help="also write scalars and filter images for TensorBoard (needs tensorboardX)")
    a("--collective-timeout", type=float, default=600.0, metavar="SECONDS",
      help="under mpiexec/srun: end the job when one collective has waited this long (a rank "
           "died or stalls); 0: wait forever")
    return p


def main(argv=None):
    """One process, or one rank of a job mpiexec or srun started (convnet/parallel): a rank
    that fails ends the whole job with its rank and the reason."""
    args = build_parser().parse_args(argv)
    format_warning = warnings.formatwarning
    warnings.formatwarning = one_line_warning
    term = signal.signal(signal.SIGTERM, interrupt)  # training's own handler stops it cleanly
    try:
        comm = connect(args.collective_timeout)
    except RuntimeError as e:
        print(f"convnet-train: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with rank0_output(comm):
            return run(args, comm)
    except KeyboardInterrupt:  # a second Ctrl-C, or one (or SIGTERM) outside training
        return fail(comm, "interrupted; the last checkpoint is kept", EXIT_INTERRUPTED)
    except (ConfigError, DataError, CheckpointError) as e:
        return fail(comm, str(e), EXIT_BAD_INPUT)
    except RunFolderError as e:
        return fail(comm, str(e), e.status)
    except OSError as e:  # a file the run reads or writes outside training's loop
        return fail(comm, os_error_line(e), EXIT_STOPPED)
    except OutOfMemory as e:
        return fail(comm, str(e), EXIT_STOPPED)
    except (ValueError, RuntimeError) as e:
        return fail(comm, f"error: {e}", EXIT_BAD_INPUT)
    except Exception as e:
        if comm.world == 1:
            raise
        return crash(comm, e)
    finally:
        comm.close()
        warnings.formatwarning = format_warning
        signal.signal(signal.SIGTERM, term)


def interrupt(signum, frame):
    """SIGTERM outside training (a test, data loading, features) stops as Ctrl-C does."""
    raise KeyboardInterrupt


def one_line_warning(message, category, filename, lineno, line=None):
    return f"convnet-train: warning: {message}\n"


def originals_options(args):
    """cuda-convnet's spellings (--layer-def, --layer-params, cifar-cropped, --crop-border,
    --test-one) as today's options, in place."""
    named = [f for f in (args.layer_def, args.layer_params) if f is not None]
    if named and args.files:
        raise ValueError("give the files either as LAYERS PARAMS or as --layer-def/"
                         "--layer-params, not both")
    if args.layer_def is not None and args.layer_params is None:
        raise ValueError("--layer-def needs --layer-params (cuda-convnet's convnet.py too)")
    if named:
        args.files = named
    if args.load_file and args.load_file.startswith("="):  # getopt's -f=RUN
        args.load_file = args.load_file[1:]
    cropped = str(args.data_provider).lower() == "cifar-cropped"
    if args.crop_border is not None or cropped:
        if not str(args.data_provider).lower().startswith("cifar"):
            raise ValueError(f"--crop-border is cuda-convnet's cifar-cropped option; for "
                             f"{args.data_provider} give --inner-size")
        border, side = 4 if args.crop_border is None else args.crop_border, CIFAR_IMAGE_SHAPE[1]
        if not 0 <= 2 * border < side:
            raise ValueError(f"--crop-border must be in 0..{(side - 1) // 2} (a crop of {side} "
                             f"- 2 x N), got {border}")
        if args.inner_size is not None and args.inner_size != side - 2 * border:
            raise ValueError(f"--inner-size {args.inner_size} and --crop-border {border} "
                             f"(--inner-size {side - 2 * border}) disagree: give one")
        args.data_provider, args.inner_size = "cifar", side - 2 * border
    if args.test_one and args.test_range and any(c in args.test_range for c in "-,"):
        warnings.warn(f"--test-one: each test scores all of --test-range {args.test_range}, "
                      "not one batch of it at a time as cuda-convnet did")


def run(args, comm):
    """Check the options and the run folder, lock it when this run writes it (rank 0 of a job:
    the others write nothing and may not see the folder at all), then run."""
    if args.list_nets:
        print(nets.list_text())
        return 0
    originals_options(args)
    args.files = nets.expand(args.files)
    check_options(args)
    reading = args.describe or args.check_grads or args.test_only or bool(args.write_features)
    args.named_run = False  # True: this run named its own folder (no --save-path)
    if not reading and args.save_path is None and args.load_file is None and args.files:
        # rank 0 names the run's folder (the others write nothing but agree on its name)
        args.save_path = comm.bcast(new_run_folder(args.files[0]) if comm.rank == 0 else None)
        args.named_run = True  # said once the run is checked and starts (build_and_train)
    run_dir = None if reading else (args.save_path or args.load_file)
    if comm.rank != 0:  # rank 0 checks and locks the folder; an error there ends the job
        return load_and_run(args, comm, run_dir)
    if run_dir is None:
        check_start(args.load_file, None)
        return load_and_run(args, comm, None)
    if not os.path.isdir(run_dir):  # no writer yet: say what is wrong before making it
        check_start(args.load_file, args.save_path)
    with RunLock(run_dir):  # then under the lock: a second writer hears the folder is busy
        check_start(args.load_file, args.save_path)
        return load_and_run(args, comm, run_dir)


def load_and_run(args, comm, run_dir):
    """Load --load-file's newest checkpoint, read the cfg files, then describe, check, test or
    train. `run_dir`: the folder this run writes (None: it only reads)."""
    state = found = None
    if args.gpu is not None:
        args.gpu = parse_gpus(args.gpu)
    if args.load_file:
        if comm.rank == 0 and has_committed_checkpoints(args.load_file):
            # rank 0 reads the checkpoint and broadcasts it (no shared filesystem assumed)
            found = load_latest_checkpoint(args.load_file, check=check_resumable)
            if found is None:
                raise CheckpointError(f"{args.load_file}: none of its checkpoints can be loaded "
                                      f"(see the warnings above)")
        found = share_checkpoint(comm, found)
        if found is not None:
            found = found[0], found[1], in_todays_meaning(found[2])
            state = found[2]
    said = start_line(args.load_file, args.save_path, found[0] if found else None)
    if said:
        inform(said)
    if args.seed is None:
        args.seed = state["seed"] if state is not None else 0
    layers_text, layers_name, params_path, params_text = resolve_files(args, state)
    layer_sections = read_cfg(layers_name, text=layers_text)
    if not layer_sections:
        raise ConfigError("defines no layers", layers_name)
    layer_sections = convert_conv_to_local(layer_sections, args)
    param_sections = read_cfg(params_path, text=params_text)

    inner_size = args.inner_size if args.inner_size is not None else declared_image_size(
        layer_sections)
    # every cfg error, with its line, before any data is read: the provider's shapes without
    # reading its images
    shapes = undeclared_data_shapes(layer_sections, lambda: provider_image_shape(
        args.data_provider, args.data_path, inner_size))
    net = ShapesOnlyNet(layer_sections=layer_sections, param_sections=param_sections,
                        params_file=params_path, backend="numpy", data_shapes=shapes)
    check_net_sections(layer_sections, args.logreg_name, layers_name)
    if args.describe:
        print(describe(net, args.mini, split_rows))
        return 0
    if args.check_grads:
        return check_grads(layer_sections, param_sections, params_path, args.seed, shapes)
    provider = make_provider(args.data_provider, args.data_path, args.train_range,
                             args.test_range, inner_size, seed=args.seed,
                             **({} if args.color_noise is None
                                else {"color_noise": args.color_noise}))
    shapes = ShapesOnlyNet(layer_sections=layer_sections, param_sections=param_sections,
                           params_file=params_path, data_shapes=data_shapes(layer_sections,
                                                                            provider))
    try:
        check_host_memory(shapes, args.mini, args.backend)
        gpus = rank_gpus(comm, args.gpu, 1 + max(layer.gpu for layer in shapes.layers))
        return build_and_train(args, comm, found, provider, layer_sections, param_sections,
                               (params_path, params_text), layers_text, layers_name, run_dir,
                               gpus)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        backend = "cuda" if "cupy" in type(exc).__module__ or "cuda" in str(exc) else \
            resolve_backend_name(args.backend)
        raise OutOfMemory(out_of_memory_message(shapes, args.mini, exc, backend)) from None


def build_and_train(args, comm, found, provider, layer_sections, param_sections, params,
                    layers_text, layers_name, run_dir, gpus):
    """Build the net on its backend, resume it if `found`, then test, write features or train.
    `params`: the params file's (path, text)."""
    params_path, params_text = params
    state = found[2] if found is not None else None
    net = Net(layer_sections=layer_sections, param_sections=param_sections,
              params_file=params_path, backend=args.backend, seed=args.seed,
              data_shapes=data_shapes(layer_sections, provider), gpus=gpus,
              precision=args.precision)
    if net.B.name == "cuda":  # the gradients go over NCCL, on the GPU they live on
        comm = on_gpu(comm, net.dev.phys[net.layers[-1].gpu])
    if hasattr(provider, "set_backend"):  # the image provider stages batches on the GPU
        provider.set_backend(net.B.name)
    inform(f"convnet: {len(net.layers)} layers, "
        f"{sum(int(np.prod(p.shape)) for p in net.unique_params()):,} parameters, "
        f"backend {net.B.name}, data {provider.name} ({provider.num_train} train / "
        f"{provider.num_test} test images)")
    if net.replicated:
        inform(f"convnet: {replicas_line(net)}")
    if comm.world > 1:
        inform(f"convnet: {describe_world(comm)}")

    saved = run_config(layers_text, layers_name, params_path, args.seed, params_text)
    trainer = Trainer(net, provider, run_dir, args.epochs, args.mini, args.test_freq,
                      args.save_interval, args.logreg_name, saved, comm=comm)
    check_classes(net, provider, trainer.cost_name)
    trainer.multiview, trainer.test_out = args.multiview_test, args.test_out
    trainer.log_interval = args.log_interval
    if state is not None:
        trainer.run_dir = args.load_file  # resume reads there (and names its files)
        trainer.resume(found)
        trainer.run_dir = run_dir  # and saves here (None: a test or features, no writes)
        inform(f"resumed at epoch {trainer.epoch} batch {trainer.batch} (step {trainer.step})")
    if args.write_features:
        write_features(net, provider, args.write_features, args.feature_path, args.mini,
                       dict(vars(args), run=args.load_file, step=trainer.step), out=sys.stdout,
                       comm=comm, log_interval=args.log_interval)
        return 0
    if args.tensorboard and comm.rank == 0:
        trainer.on_test.append(TensorBoardLogger(args.tensorboard, net))
    if args.test_only:
        result = evaluate(net, provider, args.mini, trainer.cost_name,
                          multiview=args.multiview_test, test_out=args.test_out, comm=comm,
                          out=None if comm.rank else sys.stdout, log_interval=args.log_interval)
        inform(f"test cost {result['test_cost']:.4f}  top-1 error {result['top1_error']:.4f}  "
            f"top-{result['topk']} error {result['top5_error']:.4f}")
        return 0
    if args.named_run:
        inform(f"convnet-train: saving the run in {run_dir} (no --save-path given); "
               f"convnet-show {run_dir} --show-cost draws it, --load-file {run_dir} resumes it")
    try:
        record = trainer.run()
    except TrainingStopped as e:  # every rank stops at once: rank 0 says why
        say(comm, f"convnet-train: {e}")
        return EXIT_STOPPED
    except OSError as e:  # a full disk, a folder made read-only: the run cannot go on
        print(f"convnet-train: {os_error_line(e)}; {trainer.kept()}", file=sys.stderr)
        return EXIT_STOPPED
    if trainer.stopped:
        return EXIT_INTERRUPTED
    if record:
        inform(f"test error (top-1): {100 * record['top1_error']:.2f}%  "
            f"top-{record['topk']}: {100 * record['top5_error']:.2f}%")
    return 0


def resolve_files(args, state):
    """(layers text, layers file name, params path, params text): a resumed run keeps its own
    layers.cfg, and re-reads its params file unless PARAMS is given (saved_params)."""
    files = list(args.files)
    if state is not None:
        if len(files) > 2:
            raise ValueError("give at most LAYERS PARAMS")
        if len(files) == 1:
            return state["layers_cfg"], state["layers_file"], files[0], read_cfg_text(files[0])
        if not files:  # keep the run's own layers.cfg and params
            params, text, said = saved_params(state, args.load_file)
            inform(said)
            return state["layers_cfg"], state["layers_file"], params, text
        # LAYERS PARAMS: a changed net; its parameters must still fit the checkpoint's arrays
    if len(files) != 2:
        raise ValueError("give the two files: convnet-train LAYERS PARAMS [options]")
    layers_path, params_path = files
    return read_cfg_text(layers_path), layers_path, params_path, read_cfg_text(params_path)


def convert_conv_to_local(sections, args):
    """--conv-to-local a,b: those conv layers become local (unshared) layers."""
    names = [n for opt in (args.conv_to_local, args.unshare_weights) if opt
             for n in opt.split(",") if n.strip()]
    for name in names:
        sec = sections.get(name.strip())
        if sec is None or sec.entries.get("type") is None or sec.entries["type"].value != "conv":
            raise ValueError(f"--conv-to-local: '{name}' is not a conv layer")
        sec.entries["type"].value = "local"
        sec.entries.pop("sharedBiases", None)
    return sections


def check_grads(layer_sections, param_sections, params_path, seed, data_shapes=None, batch=2):
    net = Net(layer_sections=layer_sections, param_sections=param_sections,
              params_file=params_path, backend="numpy", dtype=np.float64, seed=seed,
              data_shapes=data_shapes)
    rng = np.random.default_rng(seed)
    # The cfg's initW is tuned for training (often 1e-4): through several layers that leaves
    # gradients far below float64's resolution of the cost. Unit-scale weights keep every
    # layer's signal O(1), so the differences test the gradient code itself.
    for p in net.unique_params():
        if p.init_std:
            fan_in = p.shape[0] if p.unit_dims < 0 else int(np.prod(p.shape[p.unit_dims:]))
            p.value[...] = rng.standard_normal(p.shape) / np.sqrt(fan_in)
    data = {}
    for layer in net.data_layers:
        if layer.cfg["dataIdx"] == 0:
            data[0] = rng.standard_normal((batch,) + layer.out_shape)
        else:
            classes = max(getattr(c, "classes", 2) for c in net.cost_layers)
            data[1] = rng.integers(0, classes, batch)
    rows = check_net_grads(net, data, rng)
    tol, failed = 1e-4, 0
    for name, worst, checked in rows:
        ok = worst <= tol and checked > 0
        failed += not ok
        print(f"{name:24s} worst relative error {worst:.2e} over {checked} entries  "
              f"{'ok' if ok else 'FAIL'}")
    print(f"gradient check: {len(rows) - failed} of {len(rows)} arrays within {tol:g}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
