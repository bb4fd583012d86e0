"""Type stubs for the compiled module ``dhrt._dhrt`` (built from python/src/lib.rs)."""

__version__: str
"""The dhrt version this module was built from, such as ``"0.1.0"``."""

def hashed_position(collection: str, key: bytes) -> int:
    """The ring position of ``key`` in a hashed collection (the default placement):
    xxh3-64 of the key, seeded with xxh3-64 of the collection name. An int in
    ``[0, 2**64)``."""

def ordered_position(key: bytes) -> int:
    """The ring position of ``key`` in an ordered collection: its first 8 bytes read
    big-endian, zero-padded on the right, so ring order is key order. An int in
    ``[0, 2**64)``."""
