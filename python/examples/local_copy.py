"""A local copy of a collection: read without a round trip, kept in sync by the
cluster — and still in sync after the node it was following dies.

    python python/examples/local_copy.py
"""

import time

import dhrt

with dhrt.LocalCluster(nodes=3) as cluster:
    db = cluster.client()
    db.mset({f"user:{i}": f"name {i}" for i in range(1000)}, collection="users")

    users = db.replica("users")  # returns once it has caught up (Merkle sync)
    print(f"{len(users)} users held locally; user:7 = {users[b'user:7']!r}")

    db.set("user:1000", "a newcomer", collection="users")
    cluster.kill(0)  # the copy (and the client) move to the nodes left
    db.delete("user:7", collection="users")

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (b"user:1000" not in users or b"user:7" in users):
        time.sleep(0.05)
    assert users[b"user:1000"] == b"a newcomer" and b"user:7" not in users
    print(f"after a node died: {len(users)} users, user:1000 = {users[b'user:1000']!r}, user:7 deleted")
    users.close()
