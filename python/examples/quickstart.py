"""dhrt from Python in one minute: three real nodes in this process, a client, the
mapping view, a scan and a TTL.

    python python/examples/quickstart.py
"""

import time

import dhrt

with dhrt.LocalCluster(nodes=3) as cluster:
    print("nodes:", ", ".join(cluster.urls))
    db = cluster.client()

    db.set("alice", "admin", collection="users")  # str is stored as UTF-8
    print("alice =", db.get("alice", collection="users"))  # b'admin'

    users = db.collection("users")  # a mutable mapping of one collection
    users["bob"] = b"guest"
    users.update({"carol": "owner", "dave": "viewer"})  # one request (mset)
    print("bob" in users, len(users), sorted(users))

    # Every replica must store this one; the read asks a majority of them.
    db.set("theme", "dark", collection="prefs", consistency="all")
    print("theme =", db.get("theme", collection="prefs", consistency="quorum"))

    db.set("session", "token", ttl=0.5)  # gone after half a second
    time.sleep(1.0)
    print("session =", db.get("session"))  # None

    # ordered.* collections keep keys in order, so a scan reads them sorted.
    db.mset({"2026-11-03": "c", "2026-11-01": "a", "2026-11-02": "b"}, collection="ordered.days")
    print([key.decode() for key, _ in db.scan(collection="ordered.days")])

    stats = db.stats()
    print(f"{stats['members']['alive']} nodes alive; this node holds {stats['keys']} entries")
