"""Readers of the file formats competitions ship, independent of any task: image / mask folders
(:mod:`.images`). Each reader fails with one line naming the file and the expected format."""
from kagglekit.formats.images import FormatError

__all__ = ["FormatError"]
