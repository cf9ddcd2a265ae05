"""Exceptions shared by the three packages.

Every error a user can cause (bad media, a bad bundle, a bad corpus) is one of these, so the CLI
prints one line and the service maps each to a 4xx without catching anything broader.
"""


class AvsearchError(Exception):
    """Base class: a problem the user can act on, with a message that says how."""


class MediaError(AvsearchError):
    """Media that cannot be used: corrupt, empty, silent, unsupported, missing a track, bad time."""


class UnsupportedMediaError(MediaError):
    """Media of a kind or format avsearch does not read (as opposed to a damaged file)."""


class CorpusError(AvsearchError):
    """A corpus folder or manifest that cannot be read."""


class BundleError(AvsearchError):
    """A model or index bundle that is missing, malformed, or does not match its partner."""
