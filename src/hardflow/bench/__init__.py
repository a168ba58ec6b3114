"""Side-by-side benchmark of a hardflow image against a conventional reference image."""

from hardflow.bench.metrics import ImageMetrics, measure_layers
from hardflow.bench.report import render_markdown, targets
from hardflow.bench.run import BenchOptions, run_bench, write_results
from hardflow.bench.stats import Stat, stat

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
