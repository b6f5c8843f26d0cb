"""User-facing errors: every message is one line that names the problem and, where it helps, the fix."""


class ReenactError(Exception):
    """Base class of every error the library raises on purpose (bad input, bad weights, missing files)."""


class WeightsError(ReenactError):
    """A weight file is missing, unreadable, unsafe, of the wrong kind or does not match its architecture."""


class MissingModelError(WeightsError):
    """A required model file is absent. The message names the file, the folders searched and its source."""


class MissingDependencyError(ReenactError):
    """An optional Python package needed by the chosen feature is not installed. The message gives the pip command."""


class InputError(ReenactError):
    """An image, video, landmark set or parameter given by the user cannot be processed."""


class NoFaceError(InputError):
    """No plausible face was found where one was required."""


class Interrupted(ReenactError):
    """A long operation was stopped by the user; nothing shared was changed."""
