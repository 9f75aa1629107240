"""Errors raised on bad input. Every user-facing check raises a subclass of
:class:`FcinvError`, with a message that names the offending argument or file."""

from __future__ import annotations


class FcinvError(ValueError):
    """Base class for clear, user-facing errors (bad input, missing data)."""


class StructureError(FcinvError):
    """A structure file that cannot be read or is not a crystal."""


class ForceConstantsError(FcinvError):
    """Force constants that cannot be read or do not match the structure/supercell."""


class GridMismatchError(FcinvError):
    """A spectrum whose (q, E) grid or shape does not match the model's."""


class UnstableError(FcinvError):
    """A force-constant set that is dynamically unstable (imaginary frequencies)."""


class MissingDependencyError(FcinvError):
    """An optional package or data file that is needed but not present."""


class FcinvWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it as one
    ``fcinv CMD: warning: …`` line on stderr)."""
