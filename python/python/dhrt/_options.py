"""What :class:`dhrt.Client` and :class:`dhrt.AsyncClient` share: their settings, the
per-call keywords resolved against them, and the small value types they return.

The native client checks every argument (types, sizes, names, levels) before anything
is sent; this module only fills in defaults and converts Python conveniences
(``timedelta`` TTLs, mappings of items) into what it takes.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from dhrt import _dhrt
from dhrt.errors import ConnectionError, InvalidInputError, InvalidTypeError

Key = Union[str, bytes]
"""A key: ``bytes``, or a ``str`` sent as UTF-8. 1 byte to 64 KiB."""

Value = Union[str, bytes]
"""A value: ``bytes``, or a ``str`` sent as UTF-8. Reads always return ``bytes``."""

Consistency = Union[str, int]
"""``"one"``, ``"quorum"``, ``"all"``, ``"default"`` or a number of replicas (``2``)."""

Seconds = Union[float, int, datetime.timedelta]
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""

PathLike = Union[str, "os.PathLike[str]"]
"""A file's path: a ``str`` or a :class:`pathlib.Path`."""

DEFAULT_URL = "ws://127.0.0.1:7453"
"""Where :func:`dhrt.connect` looks when given no address: a local ``dhrt serve``."""

DEFAULT_COLLECTION = "default"
"""The collection a call uses when it names none (as the CLI and HTTP API do)."""

MAX_KEY_BYTES: int = _dhrt.MAX_KEY_BYTES
"""The longest key, in bytes (64 KiB)."""

DEFAULT_MAX_VALUE_BYTES: int = _dhrt.DEFAULT_MAX_VALUE_BYTES
"""The largest value a node accepts unless started with another ``--max-value`` (16 MiB)."""

DEFAULT_PAGE_SIZE = 1000
"""Entries a scan asks for per round trip."""


class Event(NamedTuple):
    """A change seen by a watch."""

    collection: str
    """The collection changed."""
    key: bytes
    """The key changed."""
    value: Optional[bytes]
    """The new value; ``None`` when the key was deleted or expired."""
    ts: int
    """The change's hybrid-logical-clock timestamp: ``ts >> 16`` is wall-clock
    milliseconds since the epoch. Events of one key arrive in ``ts`` order."""

    @property
    def deleted(self) -> bool:
        """Whether the change deleted the key (or it expired)."""
        return self.value is None


class RingMember(NamedTuple):
    """One member of the ring, as a node sees it."""

    id: int
    """The member's node id."""
    addr: str
    """Where to reach it (``host:port``)."""
    tokens: List[int]
    """Its ring positions (virtual nodes), ascending, in ``[0, 2**64)``."""
    status: str
    """``"alive"`` members serve requests; others are ``"suspect"``, ``"dead"``,
    ``"syncing"``, ``"left"``..."""


@dataclasses.dataclass(frozen=True)
class CollectionInfo:
    """A collection as a node describes it: its settings, agreed by every node, its
    size, and how far it is from the layout (replicas, nodes, zones) its settings ask
    for. Returned by :meth:`dhrt.Client.create_collection`,
    :meth:`~dhrt.Client.alter_collection`, :meth:`~dhrt.Client.describe_collection` and
    :meth:`~dhrt.Client.collections`. A setting that is ``None`` (or an empty
    ``select``) is the cluster's default."""

    name: str
    """The collection's name."""
    defined: bool
    """Whether it has settings (``False``: made by its first write, with the cluster's
    defaults)."""
    placement: str
    """How its keys are placed on the ring: ``"hashed"``, or ``"ordered"`` (key order)
    for ``ordered.*`` collections."""
    replicas: int
    """How many replicas keep each key now: those of the layout in use, which is the
    one the settings ask for (:attr:`replicas_setting`) once :attr:`moving` is
    ``None``."""
    keys: int
    """Live keys across the cluster, estimated from the answering node's copy (exact on
    a single node, or where every node keeps every key)."""
    bytes: int
    """Bytes of keys and values across the cluster, estimated the same way."""
    consistency: Optional[Consistency] = None
    """The level of requests that name none (``"one"``, ``"quorum"``, ``"all"`` or a
    number of replicas); ``None``: ``quorum``, or the node's own configuration."""
    ttl: Optional[float] = None
    """Seconds a value written without a ``ttl`` of its own lives; ``None``: until
    deleted."""
    max_keys: Optional[int] = None
    """Most keys the collection may hold; ``None``: no quota."""
    max_bytes: Optional[int] = None
    """Most bytes of keys and values the collection may hold; ``None``: no quota."""
    replicas_setting: Optional[int] = None
    """The replicas of each key the settings ask for (1 to 64, the ``replicas=`` of
    :meth:`~dhrt.Client.create_collection`); ``None``: the cluster's (``dhrt serve
    --replicas``). :attr:`replicas` is the number in use, which differs while a move is
    pending or under way."""
    select: Dict[str, str] = dataclasses.field(default_factory=dict)
    """The labels a node must carry (``dhrt serve --label disk=ssd``) to hold the
    collection's replicas, as ``{"disk": "ssd"}``; ``{}``: any node."""
    zone_label: Optional[str] = None
    """The node label whose values are zones, such as ``"zone"``: each key's replicas
    go to distinct zones while there are enough; ``None``: no zones."""
    moving: Optional[str] = None
    """How far the collection is from the layout its settings ask for: ``None`` when it
    uses it; else the phase of the move that takes its data there, ``"pending"`` (not
    started yet), ``"announced"`` (writes go to the old and the new replicas),
    ``"copying"`` (the new replicas pull their ranges) or ``"joint"`` (reads need a
    quorum of both). The collection serves throughout; poll
    :meth:`~dhrt.Client.describe_collection` until this is ``None`` to see a change of
    ``replicas``, ``select`` or ``zone_label`` done."""


class _Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "<unchanged>"


UNSET = _Unset.UNSET
"""The default of :meth:`dhrt.Client.alter_collection`'s settings: "leave it as it is"
(``None`` means "the cluster's default")."""

Selector = Mapping[str, str]
"""A node selector: the labels a node must carry to hold a collection's replicas, as
``{"disk": "ssd"}`` (``{}``: any node)."""

_SETTINGS = ("consistency", "ttl", "max_keys", "max_bytes", "replicas", "select", "zone_label")

_ViewTuple = Tuple[
    str, bool, str, int, int, int, Optional[str], Optional[int], Optional[int], Optional[int],
    Tuple[Optional[int], Dict[str, str], Optional[str]], Optional[str],
]


def selector_of(select: Any) -> Any:
    """A selector as the native client takes it: a ``dict`` (another mapping is copied
    into one); anything else is left for it to refuse."""
    if isinstance(select, Mapping) and not isinstance(select, dict):
        return dict(select)
    return select


def settings_of(
    consistency: Optional[Consistency],
    ttl: Optional[Seconds],
    max_keys: Optional[int],
    max_bytes: Optional[int],
    replicas: Optional[int],
    select: Optional[Selector],
    zone_label: Optional[str],
) -> Dict[str, Any]:
    """The settings a new collection is given: those not ``None``."""
    values = (consistency, seconds(ttl), max_keys, max_bytes, replicas, selector_of(select), zone_label)
    given = dict(zip(_SETTINGS, values))
    return {name: value for name, value in given.items() if value is not None}


def change_of(
    consistency: Union[Consistency, None, _Unset],
    ttl: Union[Seconds, None, _Unset],
    max_keys: Union[int, None, _Unset],
    max_bytes: Union[int, None, _Unset],
    replicas: Union[int, None, _Unset],
    select: Union[Selector, None, _Unset],
    zone_label: Union[str, None, _Unset],
) -> Dict[str, Any]:
    """The settings an alter changes: those given (``None`` returns one to the cluster's
    default); refuses a change of nothing."""
    ttl = ttl if isinstance(ttl, _Unset) else seconds(ttl)
    select = select if isinstance(select, _Unset) else selector_of(select)
    given = dict(zip(_SETTINGS, (consistency, ttl, max_keys, max_bytes, replicas, select, zone_label)))
    change = {name: value for name, value in given.items() if value is not UNSET}
    if not change:
        raise InvalidInputError(
            "nothing to change: give consistency=, ttl=, max_keys=, max_bytes=, replicas=, "
            "select= or zone_label= (None returns a setting to the cluster's default)"
        )
    return change


def collection_info(view: _ViewTuple) -> CollectionInfo:
    """A :class:`CollectionInfo` from the tuple the native client returns."""
    name, defined, placement, replicas, keys, size, level, ttl_ms, max_keys, max_bytes, layout, moving = view
    consistency: Optional[Consistency] = int(level) if level is not None and level.isdigit() else level
    ttl = None if ttl_ms is None else ttl_ms / 1000
    replicas_setting, select, zone_label = layout
    return CollectionInfo(
        name, defined, placement, replicas, keys, size, consistency, ttl, max_keys, max_bytes,
        replicas_setting, dict(select), zone_label, moving,
    )


def seconds(value: Optional[Seconds]) -> Optional[float]:
    """``value`` as float seconds (``None`` stays ``None``); the native layer checks the
    range."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return value


def seeds_of(url: Union[str, Sequence[str]]) -> List[str]:
    """The node addresses to connect through: one URL or several."""
    if isinstance(url, str):
        return [url]
    seeds = list(url)
    if not all(isinstance(s, str) for s in seeds):
        raise InvalidInputError("node addresses must be str, such as ws://127.0.0.1:7453")
    return seeds


def ca_of(ca: Optional[PathLike]) -> Optional[str]:
    """The CA file's path as a ``str`` (``None`` stays ``None``)."""
    if ca is None:
        return None
    if not isinstance(ca, (str, os.PathLike)):
        raise InvalidTypeError(f"ca must be the path of a PEM file, not {type(ca).__name__}")
    return os.fspath(ca)


def keys_of(keys: Iterable[Key]) -> List[Any]:
    """The keys of a batch read; a lone ``str`` or ``bytes`` is refused rather than read
    as a sequence of one-character keys."""
    if isinstance(keys, (str, bytes, bytearray)):
        raise InvalidTypeError(
            f"keys must be an iterable of keys, not a single {type(keys).__name__}: "
            "use mget([key]) or get(key)"
        )
    return list(keys)


def items_of(items: Union[Mapping[Key, Value], Iterable[Tuple[Key, Value]]]) -> List[Tuple[Any, Any]]:
    """``(key, value)`` pairs from a mapping or an iterable of pairs."""
    if isinstance(items, Mapping):
        return list(items.items())
    return list(items)


def stats_of(text: str) -> Dict[str, Any]:
    """A node's stats from the JSON the native client returns."""
    stats: Dict[str, Any] = json.loads(text)
    return stats


def ring_of(members: Iterable[Tuple[int, str, List[int], str]]) -> List[RingMember]:
    """Ring members from the tuples the native client returns."""
    return [RingMember(*m) for m in members]


def check_token(token: Optional[str]) -> Optional[str]:
    """A token to present: ``None``, or a non-empty ``str`` without surrounding spaces."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise InvalidTypeError(f"token must be a str (as `dhrt token create` prints it), not {type(token).__name__}")
    token = token.strip()
    if not token:
        raise InvalidInputError("token is empty: pass the token `dhrt token create` printed, or None")
    return token


class Settings:
    """A client's defaults, and per-call keywords resolved against them."""

    __slots__ = ("urls", "token", "timeout", "collection", "consistency", "max_value_bytes", "ca")

    def __init__(
        self,
        url: Union[str, Sequence[str]],
        token: Optional[str],
        timeout: Optional[Seconds],
        collection: str,
        consistency: Optional[Consistency],
        max_value_bytes: int,
        ca: Optional[PathLike] = None,
    ) -> None:
        self.token = check_token(token)
        self.urls = seeds_of(url)
        self.ca = ca_of(ca)
        self.timeout = seconds(timeout)
        self.collection = collection
        self.consistency: Consistency = "default" if consistency is None else consistency
        if not isinstance(max_value_bytes, int) or max_value_bytes < 1:
            raise InvalidInputError("max_value_bytes must be a positive int")
        self.max_value_bytes = max_value_bytes

    def call(
        self,
        collection: Optional[str],
        consistency: Optional[Consistency],
        timeout: Optional[Seconds],
    ) -> Tuple[str, Consistency, Optional[float]]:
        """``(collection, consistency, timeout)`` of a call: its own, else the client's."""
        return (
            self.collection if collection is None else collection,
            self.consistency if consistency is None else consistency,
            self.timeout if timeout is None else seconds(timeout),
        )

    def wait(self, timeout: Optional[Seconds]) -> Optional[float]:
        """The timeout of a call that names no collection."""
        return self.timeout if timeout is None else seconds(timeout)


def closed() -> ConnectionError:
    """The error of a call on a closed client."""
    return ConnectionError("the client is closed: connect again with dhrt.connect()")
