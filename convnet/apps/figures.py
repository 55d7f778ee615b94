"""What the commands' figures share: matplotlib on its Agg backend (no display needed; imported
only when a figure is drawn), a fixed 100 dpi so a figure's pixel size follows from its layout
alone, and an image drawn on an axes."""
import numpy as np

DPI = 100


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def show_image(ax, image):
    """A uint8 (C, H, W) image on `ax`: greyscale for one channel, RGB for three."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(np.moveaxis(image[:3], 0, -1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
