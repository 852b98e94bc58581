"""The errors the package raises, all subclasses of :class:`OpticamLikeError`.

Catch :class:`OpticamLikeError` to handle any error of ours (as ``cli.py`` does); the classes
are also importable from the modules that raise them (``opticam_like.instruments.ConfigError``,
``opticam_like.frames.FrameError``, ...). Each also subclasses the builtin it used to be
(``ValueError``, ``RuntimeError``), so existing ``except ValueError`` handlers keep working.
"""

__all__ = ["OpticamLikeError", "ConfigError", "FrameError", "ReductionError", "AlignmentError",
           "CalibrationError", "MissingOutputError"]


class OpticamLikeError(Exception):
    """Base of every error raised by opticam_like."""


class ConfigError(OpticamLikeError, ValueError):
    """A configuration or instrument profile is invalid.

    The message names the file (when there is one) and the offending keyword.
    """


class FrameError(OpticamLikeError):
    """A frame cannot be used.

    Parameters
    ----------
    path : str
        The frame's file.
    reason : str
        What is wrong, in words a user can act on.
    keyword : str, optional
        The header keyword concerned, if any.
    """

    def __init__(self, path, reason, keyword=None):
        self.path = str(path)
        self.reason = reason
        self.keyword = keyword
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.keyword)


class ReductionError(OpticamLikeError, RuntimeError):
    """The whole reduction cannot proceed (no frames, mixed binning, ...)."""


class AlignmentError(OpticamLikeError):
    """No reliable transform exists between a frame and the reference.

    Parameters
    ----------
    reason : str
        Human-readable reason, e.g. ``"only 2 stars matched (need 3)"``; also ``.reason``.
    """

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class MissingOutputError(OpticamLikeError, FileNotFoundError):
    """A product of an earlier stage is missing (e.g. light curves before photometry); the
    message names the folder and what to run."""


class CalibrationError(OpticamLikeError, ValueError):
    """Masters cannot be built, read or applied; the message names the files concerned."""
