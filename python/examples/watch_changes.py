"""Watching a collection: one client subscribes, another writes, every change
arrives once and in order per key.

    python python/examples/watch_changes.py
"""

import threading

import dhrt

with dhrt.LocalCluster(nodes=3) as cluster:
    watcher, writer = cluster.client(), cluster.client()

    with watcher.watch(collection="chat") as changes:  # subscribed when this returns

        def write() -> None:
            writer.set("alice", "hello", collection="chat")
            writer.set("alice", "how are you?", collection="chat")
            writer.delete("alice", collection="chat")

        threading.Thread(target=write).start()
        for _ in range(3):
            event = changes.next(timeout=5)
            assert event is not None, "every change arrives"
            what = "deleted" if event.deleted else event.value.decode()
            print(f"{event.collection}/{event.key.decode()}: {what}")
