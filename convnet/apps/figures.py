"""What the commands' figures share: matplotlib Figures drawn on their own Agg canvas (no
display needed, and pyplot's global backend is never touched, so a notebook that calls these
functions keeps its own; matplotlib is imported only when a figure is drawn), a fixed 100 dpi so
a figure's pixel size follows from its layout alone, and an image drawn on an axes."""
import numpy as np

DPI = 100


def new_figure(width_px, height_px):
    """A Figure of width_px x height_px pixels at DPI, on an Agg canvas of its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def show_image(ax, image):
    """A uint8 (C, H, W) image on `ax`: greyscale for one channel, RGB for three."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(np.moveaxis(image[:3], 0, -1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
