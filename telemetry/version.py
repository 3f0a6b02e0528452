"""The installed orchestrace version, for instrumentation scopes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("orchestrace")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
