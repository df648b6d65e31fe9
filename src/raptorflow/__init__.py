"""RaptorFlow: a multi-tenant threat-intelligence platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raptorflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
