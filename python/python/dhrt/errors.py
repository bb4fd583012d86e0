"""The exceptions dhrt raises: one hierarchy under :class:`dhrt.Error`.

Every failure of a call — a bad argument, a node that answered with an error, a node
that could not be reached or did not answer in time — is an instance of
:class:`Error`, so ``except dhrt.Error`` catches them all. The subclasses also derive
from the matching built-in exception where one exists (``ValueError``, ``TypeError``,
``KeyError``, ``TimeoutError``, ``ConnectionError``, ``PermissionError``), so code that already catches
those keeps working::

    Error
    ├── InvalidInputError (ValueError)     bad arguments, refused before sending
    │   ├── InvalidTypeError (TypeError)   an argument of the wrong type
    │   ├── TooLargeError                  a key or value over its limit
    │   └── FrameError                     bytes that are not a valid wire frame
    ├── NotFoundError (KeyError)           ``collection[key]`` of a missing key
    ├── UnavailableError                   the node cannot serve now
    │   ├── QuorumError                    too few replicas answered (.acks, .required)
    │   ├── StorageFullError               replicas refused the write for lack of storage
    │   │   └── QuotaExceededError         the write would pass its collection's quota
    │   └── ConflictError                  the write lost to a newer one; nothing acknowledged
    ├── TimeoutError (TimeoutError)        no answer in time
    ├── ConnectionError (ConnectionError)  no node reachable, or the connection dropped
    ├── AuthError (PermissionError)        the node refused the client's token
    │   ├── UnauthorizedError              no token, or a malformed, unknown or revoked one
    │   └── ForbiddenError                 the token does not allow the call
    ├── NodeError                          an in-process node could not start or stop
    └── ProtocolError                      an answer the client did not expect

Each exception has a ``code``: the node's stable error name (``"quorum_not_reached"``,
``"invalid_input"``...) or, for failures on the client's side, ``"connection"``,
``"timeout"``, ``"node"`` or ``"protocol"``.

The compiled module (``python/src/errors.rs``) maps every failure to these classes in
one place.
"""

from __future__ import annotations

import builtins
from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "Error",
    "InvalidInputError",
    "InvalidTypeError",
    "TooLargeError",
    "FrameError",
    "NotFoundError",
    "UnavailableError",
    "QuorumError",
    "StorageFullError",
    "QuotaExceededError",
    "ConflictError",
    "TimeoutError",
    "ConnectionError",
    "AuthError",
    "UnauthorizedError",
    "ForbiddenError",
    "NodeError",
    "ProtocolError",
]


class Error(Exception):
    """Base class of every error dhrt raises.

    ``message`` is a sentence a person can act on; ``code`` names the kind of failure
    for programs.
    """

    code: str = "error"

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Tuple[Any, ...]:
        # Rebuilt from its attributes, so pickle keeps whatever a subclass adds.
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: Type[Error], state: Dict[str, Any]) -> Error:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class InvalidInputError(Error, ValueError):
    """An argument is invalid: a key, collection name, consistency level, TTL or
    timeout the node would refuse. Raised before anything is sent, or by the node
    (code ``invalid_input`` or ``unsupported``)."""

    code = "invalid_input"


class InvalidTypeError(InvalidInputError, TypeError):
    """An argument has the wrong type (keys and values are ``str`` or ``bytes``)."""


class TooLargeError(InvalidInputError):
    """A key, value or request is larger than the node accepts (keys up to 64 KiB,
    values up to 16 MiB unless the node was started with another ``--max-value``)."""

    code = "too_large"


class FrameError(InvalidInputError):
    """Bytes that are not a valid dhrt wire frame. ``kind`` says why: ``"empty"``,
    ``"unsupported_version"``, ``"malformed"``, ``"trailing"`` or ``"too_large"``."""

    code = "frame"

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


class NotFoundError(Error, KeyError):
    """The thing named does not exist: a missing key read with ``collection[key]``, or
    a watch the node no longer has. (``Client.get`` returns ``None`` for a missing key
    instead.)"""

    code = "not_found"


class UnavailableError(Error):
    """The node cannot serve the request now (it is joining, leaving or overloaded, or
    a watch could no longer promise every change). Retry, or ask another node."""

    code = "unavailable"


class _Replicas(Error):
    """An error that may say how many replicas answered: ``acks`` of ``required``
    (``None`` when not known)."""

    def __init__(
        self, message: str, acks: Optional[int] = None, required: Optional[int] = None
    ) -> None:
        super().__init__(message)
        self.acks = acks
        self.required = required


class QuorumError(_Replicas, UnavailableError):
    """Fewer replicas answered than the consistency level requires.

    ``acks`` replicas answered of the ``required``. A write may still have been stored
    by the replicas that answered; retrying it is safe (last writer wins)."""

    code = "quorum_not_reached"


class StorageFullError(_Replicas, UnavailableError):
    """Too many of the key's replicas refused the write for lack of storage: their disk
    is below its reserve (``dhrt serve --min-free-mb``), or they hold as many
    collections as they allow (``--max-collections``) and the write would create one
    more. Nothing was written where it was refused.

    Reads, deletes and collection drops still work (they free space); writes succeed
    again once space is freed or nodes are added. ``acks`` of ``required`` replicas
    acknowledged. It is an :class:`UnavailableError`, as :class:`QuorumError` (what
    older nodes answer in this case) is."""

    code = "storage_full"


class QuotaExceededError(StorageFullError):
    """The write would take its collection past its quota of keys or bytes (the
    ``max_keys`` or ``max_bytes`` of :meth:`dhrt.Client.create_collection` or
    :meth:`~dhrt.Client.alter_collection`). Nothing was written.

    Reads, deletes, and writes that only replace keys the collection already holds (if
    they fit its byte quota) still work; new keys are accepted again once keys are
    deleted or the quota is raised. It is a :class:`StorageFullError` (the node answers
    both with HTTP 507): the collection has no room left, as a disk with a quota has
    none."""

    code = "quota_exceeded"


class ConflictError(_Replicas, UnavailableError):
    """The write lost to a newer write of the same key that a replica already held,
    and re-stamping it above that write did not win within the node's bounded attempts.
    Nothing was acknowledged; retrying writes above what the replicas hold.

    Also raised by :meth:`dhrt.Client.create_collection` for a collection that has
    settings already (change them with :meth:`~dhrt.Client.alter_collection`)."""

    code = "conflict"


class TimeoutError(_Replicas, builtins.TimeoutError):
    """No answer in time: the client's ``timeout`` passed, or the node's replicas did
    not answer in its request timeout (then ``acks`` and ``required`` say how many
    answered). A write may still have been stored; retrying it is safe."""

    code = "timeout"


class ConnectionError(Error, builtins.ConnectionError):
    """No node could be reached, or the connection dropped during the call. Check the
    address and that a node is running (``python -m dhrt serve``)."""

    code = "connection"


class AuthError(Error, builtins.PermissionError):
    """The node refused the client's token (a node started with ``--admin-token-file``
    requires one from every client)."""

    code = "auth"


class UnauthorizedError(AuthError):
    """No token was given, or the node does not know it (malformed, unknown or
    revoked): pass ``token=`` to :func:`dhrt.connect` (``dhrt token create`` makes one)."""

    code = "unauthorized"


class ForbiddenError(AuthError):
    """The token does not allow the call: its role (``read`` cannot write) or the
    collections it covers, or the collection is reserved for the cluster (``_dhrt.``)."""

    code = "forbidden"


class NodeError(Error):
    """An in-process node (:class:`dhrt.LocalCluster`) could not start or stop: a port
    in use, a data directory that cannot be opened."""

    code = "node"


class ProtocolError(Error):
    """The node answered with something the client does not expect (another dhrt
    version?), or failed with an internal error (please report it)."""

    code = "protocol"
