"""TensorBoard: a Trainer test callback (`trainer.on_test`) writing each test record's scalars
and every conv/local layer's filters (engine/filters.py's mosaics). convnet-train --tensorboard
adds it; tensorboardX is an optional dependency, imported when the logger is made."""
import numpy as np

from ..engine.filters import filter_mosaic, graph_from_net, towers_of, upscale


class TensorBoardLogger:
    """A Trainer test callback: the record's scalars and every conv/local layer's filters."""

    SCALARS = ("train_cost", "test_cost", "top1_error", "top5_error", "images_per_s")

    def __init__(self, log_dir, net):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise RuntimeError("--tensorboard needs tensorboardX, which is not installed: "
                               "pip install 'convnet[tensorboard]' (or tensorboardX)") from None
        self.net = net
        self.graph = graph_from_net(net)
        self.writer = SummaryWriter(log_dir)

    def __call__(self, record):
        step = int(record["step"])
        for key in self.SCALARS:
            if record.get(key) is not None:
                self.writer.add_scalar(key, float(record[key]), step)
        for layer in self.net.layers:
            if layer.type not in ("conv", "local"):
                continue
            w = np.asarray(self.net.B.to_numpy(layer.weights[0].value))
            if layer.type == "local":
                w = w[w.shape[0] // 2, w.shape[1] // 2]
            towers = towers_of(self.graph, layer.name)
            rgb = w.shape[1] == 3 and layer.cfg["groups"][0] == 1
            mosaic, _ = filter_mosaic(w, towers, rgb, max_filters=None, max_channels=16)
            big, _ = upscale(mosaic, (480, 720))
            self.writer.add_image(f"filters/{layer.name}", big.astype(np.float32), step,
                                  dataformats="HWC" if rgb else "HW")
        self.writer.flush()

    def close(self):
        self.writer.close()
