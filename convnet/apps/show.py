"""`convnet-show RUN_DIR`: what a saved run learned, as PNG files (cuda-convnet's shownet.py).

    --show-cost            train/test cost and top-1/top-5 error against epochs (metrics.jsonl)
    --show-filters LAYER   a conv/local layer's filters as a grid (the paper's Figure 3)
    --show-preds           test images with their top-5 predictions (the paper's Figure 4, left)

Figures are drawn with matplotlib's Agg backend (no display needed) at a fixed 100 dpi, so a
figure's pixel size follows from its layout alone (figures.py). The filter mosaic and the towers
are engine/filters.py's; the saved run is read with training/saved_run.py.
"""
import math
import os
import sys
import textwrap
import warnings

import numpy as np

from ..data import DataError
from ..engine.config import ConfigError, read_cfg
from ..engine.filters import filter_mosaic, graph_from_sections, towers_of, upscale
from ..training.checkpoint import read_metrics
from ..training.saved_run import array_key, load_run, newest_checkpoint
from ..training.train import Trainer
from .figures import DPI, new_figure, show_image
from .options import CommandParser

COST_SIZE = (1000, 750)            # pixels
MARGIN, TITLE_BAND, TOWER_BAND = 20, 50, 60
PRED_CELL = (300, 380)             # pixels per predicted image: picture above, top-5 bars below
EXIT_BAD_INPUT = 2


# ----------------------------------------------------------------------------- cost

def epoch_positions(records):
    """x of each metrics record in epochs: epoch - 1 + batch / batches per epoch."""
    per_epoch = max((r.get("batch") or 0) for r in records) or 1
    return np.array([r["epoch"] - 1 + (r.get("batch") or per_epoch) / per_epoch
                     for r in records], dtype=float)


def moving_average(values, window):
    """Trailing mean over `window` points (fewer at the start); window 1 returns the values."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_cost(records, path, smooth=1, title="run"):
    """Cost (train and test) and test error (top-1, top-5) against epochs; COST_SIZE pixels."""
    if not records:
        raise ValueError("no metrics records to plot")
    if smooth < 1:
        raise ValueError(f"--smooth must be >= 1, got {smooth}")
    x = epoch_positions(records)
    dot = 3 if len(records) > 3 else 6  # a run with one or two tests still shows its points
    fig = new_figure(*COST_SIZE)
    ax_cost, ax_err = fig.subplots(2, 1, sharex=True)
    series = [(ax_cost, "train_cost", "train cost", "tab:blue", 1),
              (ax_cost, "test_cost", "test cost", "tab:orange", 1),
              (ax_err, "top1_error", "test top-1 error", "tab:red", 100),
              (ax_err, "top5_error", f"test top-{records[-1].get('topk', 5)} error",
               "tab:purple", 100)]
    for ax, key, label, colour, scale in series:
        points = [(xi, r[key]) for xi, r in zip(x, records) if r.get(key) is not None]
        if not points:
            continue
        xs, ys = np.array(points).T
        ys = ys * scale
        if smooth > 1:
            ax.plot(xs, ys, color=colour, alpha=0.25, linewidth=1)
            ax.plot(xs, moving_average(ys, smooth), color=colour, marker="o", markersize=dot,
                    label=f"{label} (mean of {smooth})")
        else:
            ax.plot(xs, ys, color=colour, marker="o", markersize=dot, label=label)
    last = records[-1]
    ax_cost.set_ylabel("cost (mean -log p of the true label)")
    ax_err.set_ylabel("error (%)")
    ax_err.set_xlabel("epoch")
    ax_err.set_xlim(0, x.max() * 1.03)  # from the start of training, even with one test
    for ax in (ax_cost, ax_err):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    summary = ", ".join(f"{name} {100 * last[key]:.2f}%" for key, name in
                        (("top1_error", "top-1"), ("top5_error", f"top-{last.get('topk', 5)}"))
                        if last.get(key) is not None)
    tests = f"{len(records)} test" + ("s" if len(records) != 1 else "")
    ax_cost.set_title(f"{title}: {tests}, last at epoch {x[-1]:.2f}"
                      + (f" ({summary})" if summary else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


# ----------------------------------------------------------------------------- filters

def filter_weights(arrays, graph, layer):
    """(weights (F, Cg, fs, fs), note) of `layer` from checkpoint arrays; ValueError if none."""
    if layer not in graph:
        raise ValueError(f"unknown layer '{layer}' (layers: {', '.join(graph)})")
    kind = graph[layer][0]
    convs = [name for name, (k, _, _) in graph.items() if k in ("conv", "local")]
    if kind not in ("conv", "local"):
        raise ValueError(f"layer '{layer}' (type {kind}) has no filters; layers with filters: "
                         f"{', '.join(convs) or 'none'}")
    w = arrays.get(array_key(f"{layer}.w0"))
    if w is None:
        raise ValueError(f"the checkpoint has no weights for layer '{layer}'")
    note = ""
    if kind == "local":  # (OH, OW, F, Cg, fs, fs): the filters at the centre output position
        oh, ow = w.shape[0] // 2, w.shape[1] // 2
        w, note = w[oh, ow], f", at output position ({oh}, {ow})"
    if len(graph[layer][1]) > 1:
        note += f", input 0 ('{graph[layer][1][0]}') of {len(graph[layer][1])}"
    return w, note


def plot_filters(weights, path, title, towers=1, norm_each=False, input_channels=None):
    """Draw filter_mosaic(weights) with a title (and tower labels); returns (path, (w, h)).

    The figure is the upscaled mosaic (at least 480 pixels wide) plus MARGIN on each side,
    TOWER_BAND on the left when there are towers, and TITLE_BAND on top (14 pixels more per
    extra line of a long subtitle)."""
    count, channels, size = weights.shape[0], weights.shape[1], weights.shape[2]
    input_channels = channels * towers if input_channels is None else input_channels
    rgb = input_channels == 3 and channels == 3
    mosaic, info = filter_mosaic(weights, towers, rgb, norm_each)
    big, scale = upscale(mosaic)
    img_h, img_w = big.shape[:2]
    left = MARGIN + (TOWER_BAND if towers > 1 else 0)
    fig_w = max(img_w, 480) + left + MARGIN

    shown = info["shown"]
    what = f"{count} filters {size}x{size}x{channels}" + (" RGB" if rgb else "")
    if shown < count:
        what += f" (first {shown // towers} of each tower shown)" if towers > 1 else \
            f" (first {shown} shown)"
    if not rgb and channels > 1:
        what += "; rows: filters, columns: input channels" + (
            f" (first {info['channels_shown']} of {channels})"
            if info["channels_shown"] < channels else "")
    what += "; each filter normalized" if norm_each else "; one scale for all"
    lines = textwrap.wrap(what, width=max(40, (fig_w - 2 * MARGIN) // 7))
    band = TITLE_BAND + 14 * (len(lines) - 1)
    fig_h = img_h + band + MARGIN

    fig = new_figure(fig_w, fig_h)
    x0 = left + (fig_w - left - MARGIN - img_w) // 2
    ax = fig.add_axes([x0 / fig_w, MARGIN / fig_h, img_w / fig_w, img_h / fig_h])
    ax.imshow(big, cmap=None if rgb else "gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    for t, (top, bottom) in enumerate(info["tower_rows"] if towers > 1 else []):
        y = MARGIN + img_h - (top + bottom) / 2 * scale
        fig.text((x0 - 8) / fig_w, y / fig_h, f"tower {t + 1}", rotation=90, ha="right",
                 va="center", fontsize=10)
    fig.text(0.5, 1 - 18 / fig_h, title, ha="center", va="center", fontsize=12)
    for i, line in enumerate(lines):
        fig.text(0.5, 1 - (38 + 14 * i) / fig_h, line, ha="center", va="center", fontsize=9)
    fig.savefig(path, dpi=DPI)
    return path, (fig_w, fig_h)


# ----------------------------------------------------------------------------- predictions

def centre_crops(provider, index):
    """The float32 test-mode input of test images `index` (centre crop, mean subtracted)."""
    top, left = provider.center
    _, height, width = provider.image_shape
    crops = provider.test_images[index][:, :, top:top + height, left:left + width]
    return crops.astype(np.float32) - provider.cropped_mean


def check_cost_layer(run_dir, name, records):
    """shownet.py's --show-cost=LAYER: LAYER must be a cost layer of the run's net and the one
    its metrics.jsonl reports (recorded as cost_layer; older runs: the first cost.logreg)."""
    _, _, state = newest_checkpoint(run_dir)
    sections = read_cfg(state.get("layers_file") or "layers.cfg", text=state["layers_cfg"])
    types = {n: sec.entries["type"].value for n, sec in sections.items() if "type" in sec.entries}
    if not types.get(name, "").startswith("cost."):
        costs = ", ".join(n for n, t in types.items() if t.startswith("cost.")) or "none"
        raise ValueError(f"--show-cost={name}: not a cost layer of the run's net (its cost "
                         f"layers: {costs})")
    recorded = [r["cost_layer"] for r in records if r.get("cost_layer")]
    if recorded and recorded[-1] != name:
        raise ValueError(f"--show-cost={name}: metrics.jsonl records the cost of "
                         f"'{recorded[-1]}'")
    first = next((n for n, t in types.items() if t == "cost.logreg"), None)
    if not recorded and first != name:  # older runs did not record it
        warnings.warn(f"--show-cost={name}: metrics.jsonl holds the cost the run reported, "
                      f"'{first}' unless it was trained with --logreg-name {name}")


def probabilities_layer(net, cost_name=None):
    """The softmax layer feeding the net's (first) cost.logreg layer."""
    cost = net[cost_name or Trainer.default_cost(net)]
    return cost.inputs[1]



def predict(net, provider, count, only_errors=False, seed=0, batch_size=128, probs_name=None):
    """Up to `count` test images in a seeded random order: (index, probabilities (n, classes)).

    With only_errors, only images whose top-1 prediction is wrong (scanning until enough).
    probs_name: the softmax layer (default: the one feeding the first cost.logreg)."""
    probs_name = probs_name or probabilities_layer(net)
    order = np.random.default_rng(seed).permutation(provider.num_test)
    picked, probs = [], []
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        labels = provider.test_labels[index]
        acts = net.forward({0: centre_crops(provider, index), 1: labels}, train=False)
        p = np.asarray(net.B.to_numpy(acts[probs_name]), dtype=np.float64)
        keep = p.argmax(axis=1) != labels if only_errors else np.ones(len(index), bool)
        picked.append(index[keep])
        probs.append(p[keep])
        if sum(map(len, picked)) >= count:
            break
    return np.concatenate(picked)[:count], np.concatenate(probs)[:count]


def plot_predictions(images, labels, probs, label_names, path, title, cols=4):
    """Each image with its top-5 classes as bars; the true class's bar red, the others blue.

    The figure is cols * PRED_CELL[0] wide and rows * PRED_CELL[1] + TITLE_BAND high."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to show")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    cell_w, cell_h = PRED_CELL
    fig_w, fig_h = cols * cell_w, rows * cell_h + TITLE_BAND
    fig = new_figure(fig_w, fig_h)
    top_k = min(5, probs.shape[1])
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y_top = c * cell_w, fig_h - TITLE_BAND - r * cell_h
        img_size = 160
        ax = fig.add_axes([(x0 + (cell_w - img_size) / 2) / fig_w, (y_top - 25 - img_size) / fig_h,
                           img_size / fig_w, img_size / fig_h])
        show_image(ax, images[i])
        truth = int(labels[i])
        best = np.argsort(-probs[i], kind="stable")[:top_k]
        right = best[0] == truth
        ax.set_title(class_name(label_names, truth), fontsize=10, color="black" if right else "red",
                     pad=3)
        bars = fig.add_axes([(x0 + 110) / fig_w, (y_top - cell_h + 35) / fig_h,
                             (cell_w - 125) / fig_w, 130 / fig_h])
        colours = ["tab:red" if k == truth else "tab:blue" for k in best]
        bars.barh(np.arange(top_k), probs[i][best], color=colours, height=0.7)
        bars.set_yticks(np.arange(top_k), [class_name(label_names, k) for k in best], fontsize=8)
        bars.invert_yaxis()
        bars.set_xlim(0, 1)
        bars.tick_params(axis="x", labelsize=7)
        for tick, k in zip(bars.get_yticklabels(), best):
            if k == truth:
                tick.set_color("tab:red")
    fig.text(0.5, 1 - 25 / fig_h, title, ha="center", va="center", fontsize=12)
    fig.savefig(path, dpi=DPI)
    return path, (fig_w, fig_h)


# ----------------------------------------------------------------------------- the command

def build_parser():
    p = CommandParser("convnet-show", "Draw what a saved run learned as PNG files: cost "
                      "curves, filters, predictions (cuda-convnet's shownet.py).")
    a = p.add_argument
    a("run_dir", metavar="RUN_DIR", nargs="?", default=None,
      help="a run folder written by convnet-train --save-path")
    a("-f", "--load-file", metavar="RUN_DIR", default=None,
      help="the run folder, as cuda-convnet's shownet.py -f")
    a("--out", default=None, help="folder for the PNG files (default: RUN-figures in the "
      "current folder, RUN being the run folder's name: the run itself is never written)")
    a("--show-cost", metavar="COST_LAYER", nargs="?", const=True, default=None,
      help="cost.png: train/test cost, top-1/top-5 error against epochs (--show-cost=LAYER, "
           "shownet.py's form, names the cost layer: the one the run reported)")
    a("--smooth", type=int, default=1, help="with --show-cost: mean over N tests")
    a("--show-filters", metavar="LAYER", default=None,
      help="filters-LAYER.png: a conv or local layer's filters (RGB for 3-channel input)")
    p.add_flag("--norm-filters", "with --show-filters: normalize each filter to its own range")
    a("--show-preds", metavar="SOFTMAX_LAYER", nargs="?", const=True, default=None,
      help="preds.png (preds-errors.png with --only-errors): test images and top-5 guesses "
           "(--show-preds=LAYER, shownet.py's form: that softmax's; by default the one feeding "
           "the first cost.logreg)")
    p.add_flag("--only-errors", "with --show-preds: misclassified images only")
    a("--num-preds", type=int, default=16, help="with --show-preds: how many images")
    a("--seed", type=int, default=0, help="with --show-preds: which random test images")
    p.add_data_provider()
    a("--data-path", default=None, help="the data set's folder")
    a("--test-range", default=None, help="test batches (default: the provider's test batch)")
    a("--inner-size", type=int, default=None,
      help="centre crop size (default: the data layer's imgSize)")
    a("--params-file", default=None,
      help="layer-params.cfg to rebuild the net with (default: the one the run recorded)")
    p.add_backend()
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    format_warning = warnings.formatwarning
    warnings.formatwarning = one_line_warning
    try:
        return run(args)
    except (ConfigError, DataError) as e:
        print(f"convnet-show: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, RuntimeError, OSError) as e:
        print(f"convnet-show: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        warnings.formatwarning = format_warning


def one_line_warning(message, category, filename, lineno, line=None):
    """A warning as the command's own line: no source file, line number or code."""
    return f"convnet-show: warning: {message}\n"


def class_name(names, k):
    """Class k's name; a net with more outputs than the data has names shows 'class k'."""
    return names[k] if 0 <= k < len(names) else f"class {k}"


def run(args):
    if args.load_file is not None:  # shownet.py -f RUN_DIR
        load = args.load_file[1:] if args.load_file.startswith("=") else args.load_file
        if args.run_dir is not None and os.path.abspath(args.run_dir) != os.path.abspath(load):
            raise ValueError(f"two run folders: {args.run_dir} and -f {load}")
        args.run_dir = load
    if args.run_dir is None:
        raise ValueError("give the run folder: convnet-show RUN_DIR (or -f RUN_DIR)")
    if not os.path.isdir(args.run_dir):
        raise ValueError(f"run folder {args.run_dir} does not exist")
    if not (args.show_cost or args.show_filters or args.show_preds):
        raise ValueError("nothing to show: give --show-cost, --show-filters LAYER and/or "
                         "--show-preds")
    name = os.path.basename(os.path.abspath(args.run_dir))
    out = args.out or f"{name}-figures"  # reading a run never writes into it
    if os.path.isdir(out) and not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"{out} is not writable: give --out FOLDER for the PNG files")

    def target(file):
        """Where a figure goes; the folder is made by the first figure drawn (an error before
        it leaves nothing behind)."""
        os.makedirs(out, exist_ok=True)
        return os.path.join(out, file)

    written = []
    if args.show_cost:
        records = read_metrics(args.run_dir)
        if args.show_cost is not True:
            check_cost_layer(args.run_dir, args.show_cost, records)
        if not records:
            raise ValueError(f"{args.run_dir}: no metrics.jsonl records yet (a run writes one "
                             "at each test)")
        written.append(plot_cost(records, target("cost.png"), args.smooth, name))
    if args.show_filters:
        step, arrays, state = newest_checkpoint(args.run_dir)
        sections = read_cfg(state.get("layers_file") or "layers.cfg", text=state["layers_cfg"])
        graph = graph_from_sections(sections)
        weights, note = filter_weights(arrays, graph, args.show_filters)
        towers = towers_of(graph, args.show_filters)
        groups = graph[args.show_filters][2][0]
        written.append(plot_filters(
            weights, target(f"filters-{args.show_filters}.png"),
            f"{name}, step {step}: layer {args.show_filters}{note}"
            + (f", {towers} towers" if towers > 1 else ""),
            towers, args.norm_filters, input_channels=weights.shape[1] * groups)[0])
    if args.show_preds:
        if args.num_preds < 1:
            raise ValueError(f"--num-preds must be >= 1, got {args.num_preds}")
        net, provider, step, _ = load_run(args.run_dir, args.data_provider, args.data_path,
                                          args.test_range, args.inner_size, args.backend,
                                          args.params_file)
        softmax = None if args.show_preds is True else args.show_preds
        if softmax is not None and getattr(net.by_name.get(softmax), "type", None) != "softmax":
            raise ValueError(f"--show-preds={softmax}: the run's net has no softmax layer "
                             f"'{softmax}'")
        index, probs = predict(net, provider, args.num_preds, args.only_errors, args.seed,
                               probs_name=softmax)
        if len(index) == 0:
            raise ValueError("no misclassified test images to show")
        labels = provider.test_labels[index]
        wrong = int((probs.argmax(axis=1) != labels).sum())
        title = (f"{name}, step {step}: {len(index)} random test images, {wrong} misclassified"
                 f" (red bar: the true class; red name: top-1 wrong)")
        file = "preds-errors.png" if args.only_errors else "preds.png"
        written.append(plot_predictions(provider.test_images[index], labels, probs,
                                        provider.label_names, target(file),
                                        title)[0])
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
