"""pytest plugin: which kernels each test ran, under the emulator (run.py puts this folder on the
path):

    python tools/kernel_emulator/run.py -m pytest -q -m cuda -p kernel_map \
        --kernel-map MAP.json tests

MAP.json: {"kernels": every kernel csrc defines, "tests": {nodeid: {"kernels": [...],
"seconds": s, "outcome": "passed" | "failed" | "skipped", "emulator_only": bool}}}, a kernel
named as emu_kernels_seen names it ("name", or with its template arguments but the tile
shape: "name[Op=ForwardOp in conv.cu]"). sanitize_subset.py reads it.
Kernels run in a test's subprocesses (a CLI test's convnet-train) are not seen.
"""
import json
import os
import time

import pytest

import emulator


def pytest_addoption(parser):
    parser.addoption("--kernel-map", metavar="FILE",
                     help="write which kernels each test ran to FILE (JSON)")


def pytest_configure(config):
    path = config.getoption("--kernel-map")
    if path:
        config.pluginmanager.register(KernelMap(path), "kernel-map-recorder")


class KernelMap:
    def __init__(self, path):
        if not os.environ.get("CONVNET_EMULATED_C"):
            raise pytest.UsageError("--kernel-map needs the emulated convnet._C "
                                    "(tools/kernel_emulator/run.py)")
        self.path = path
        self.controls = emulator.Controls(os.environ["CONVNET_EMULATED_C"])
        self.tests = {}
        self.outcomes = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.controls.kernels_seen()  # forget what ran outside a test (collection, imports)
        start = time.perf_counter()
        yield
        self.tests[item.nodeid] = {
            "kernels": self.controls.kernels_seen(),
            "seconds": round(time.perf_counter() - start, 3),
            "outcome": self.outcomes.pop(item.nodeid, "passed"),
            "emulator_only": "emulator_controls" in getattr(item, "fixturenames", ()),
        }

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and self.outcomes.get(report.nodeid) != "failed":
            self.outcomes[report.nodeid] = "skipped"

    def pytest_sessionfinish(self, session):
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump({"kernels": emulator.kernel_names(), "tests": self.tests}, f, indent=1)
            f.write("\n")
