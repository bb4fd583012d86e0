"""Failure and recovery: kill a node while writing at quorum, keep serving, bring it
back, and see what errors say when a consistency level cannot be met.

    python python/examples/failover.py
"""

import dhrt

with dhrt.LocalCluster(nodes=3, persist=True) as cluster:
    db = cluster.client(consistency="quorum")
    for i in range(100):
        db.set(f"order:{i}", f"item {i}", collection="orders")

    cluster.kill(2)  # a crash: no goodbye, the others notice by themselves
    print("killed node 2; writing on with", cluster.running)
    for i in range(100, 200):
        db.set(f"order:{i}", f"item {i}", collection="orders")  # 2 of 3 replicas suffice

    try:
        db.set("audit", "x", consistency="all")  # needs all 3
    except dhrt.QuorumError as e:
        print(f"all: {e.acks} of {e.required} replicas answered -> {e}")

    cluster.restart(2)  # same node id, same port, its data dir
    print("node 2 is back:", cluster.running)
    orders = [db.get(f"order:{i}", collection="orders") for i in range(200)]
    assert all(v is not None for v in orders)
    print("all 200 orders readable; node 2 holds", db.stats(cluster.addrs[2])["keys"], "entries")
