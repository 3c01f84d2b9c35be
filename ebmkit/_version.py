"""The installed distribution's version, in a module of its own: everything that records it
(config.json, model cards, benchmark headers) imports it from here, below every other layer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("torch-ebmkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
