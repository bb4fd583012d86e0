"""dhrt — a masterless, horizontally scalable, real-time key/value database.

This package is the Python face of dhrt. The compiled module ``dhrt._dhrt`` wraps the
Rust core; this layer re-exports it and, as the client grows, adds what is nicer to
write in Python.

Ring positions are ints in ``[0, 2**64)``::

    >>> import dhrt
    >>> hex(dhrt.ordered_position(b"a"))
    '0x6100000000000000'
"""

from dhrt._dhrt import __version__, hashed_position, ordered_position

__all__ = ["__version__", "hashed_position", "ordered_position"]
