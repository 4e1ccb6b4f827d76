"""The plugin's version: the version of the cosyvoice-stream distribution that ships it."""

from cosyvoice_stream.version import __version__

__all__ = ["__version__"]
