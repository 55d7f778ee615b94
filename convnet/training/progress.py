"""What a run tells its user while it works: the `convnet` logger, whose console handler writes
each message's text alone (the same lines the commands always printed), and Progress, a bar on
a terminal or one log line every `interval` seconds when the output is a file or a pipe.

Every line a user sees goes through logging.getLogger("convnet"): a program that embeds convnet
can raise its level, add a file handler or remove the console handler (CONSOLE)."""
import logging
import os
import sys
import time

logger = logging.getLogger("convnet")
DEFAULT_LOG_INTERVAL = 30.0  # seconds between progress lines when the output is not a terminal


class ConsoleHandler(logging.Handler):
    """Writes a record's message, as printed before, to the stream it names (`extra={"out":
    stream}`) or to the sys.stdout of the moment (a rank's /dev/null, pytest's capture)."""

    def emit(self, record):
        try:
            out = getattr(record, "out", None) or sys.stdout
            out.write(self.format(record) + "\n")
            out.flush()
        except Exception:
            self.handleError(record)


CONSOLE = ConsoleHandler()
if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
    logger.addHandler(CONSOLE)
if logger.level == logging.NOTSET:
    logger.setLevel(logging.INFO)


def inform(message, out=None, level=logging.INFO):
    """Tell the user `message` through the convnet logger (on `out`, else stdout)."""
    logger.log(level, message, extra={"out": out})


def is_terminal(stream):
    return bool(getattr(stream, "isatty", None) and stream.isatty()) and not os.environ.get("CI")


def rate_text(cost, images, seconds):
    """'cost 0.4123, 1,234 img/s' (cost left out when there is none yet)."""
    rate = f"{images / seconds:,.0f} img/s" if seconds > 0 else "- img/s"
    return rate if cost is None else f"cost {cost:.4f}, {rate}"


class Progress:
    """Counts `total` steps (from `initial`) with the running cost and images per second: a
    tqdm bar when `out` is a terminal, else a log line every `interval` seconds (None: no
    lines); `out` None: silent (a Python caller that asked for no progress)."""

    def __init__(self, desc, total, out=None, interval=DEFAULT_LOG_INTERVAL, initial=0,
                 unit="batch"):
        self.desc, self.total, self.out = desc, total, out
        self.interval = None if out is None else interval
        self.done, self.images, self.cost = initial, 0, None
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if is_terminal(self.out):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False,
                            file=self.out)

    def update(self, images, cost=None):
        """One step of `images` images done; `cost`: the running cost so far."""
        self.done, self.images, self.cost = self.done + 1, self.images + images, cost
        now = time.monotonic()
        if self.bar is not None:
            self.bar.set_postfix_str(rate_text(cost, self.images, now - self.started),
                                     refresh=False)
            self.bar.update(1)
        elif self.interval is not None and now - self.last_line >= self.interval:
            self.last_line = now
            inform(f"{self.desc}: {self.done}/{self.total} batches, "
                f"{rate_text(cost, self.images, now - self.started)}", self.out)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
