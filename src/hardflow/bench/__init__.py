"""Side-by-side benchmark of a hardflow image against a conventional reference image."""

from .metrics import ImageMetrics, measure_layers
from .report import render_markdown, targets
from .run import BenchOptions, run_bench, write_results
from .stats import Stat, stat

__all__ = [
    "BenchOptions",
    "ImageMetrics",
    "Stat",
    "measure_layers",
    "render_markdown",
    "run_bench",
    "stat",
    "targets",
    "write_results",
]
