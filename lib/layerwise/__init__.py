"""layerwise: per-layer learning rates for training from scratch.

A helper library (data, models, one-run training loop, run store, sweeps and tuning)
and the toolkit the project's studies are built from.  ``import layerwise as lw``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("layerwise")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
