"""The asyncio client: a thousand requests in flight at once, pipelined on one
connection per node, and an async watch.

    python python/examples/async_client.py
"""

import asyncio
import time

import dhrt


async def main(cluster: dhrt.LocalCluster) -> None:
    async with cluster.async_client() as db:
        start = time.perf_counter()
        await asyncio.gather(*(db.set(f"user:{i}", f"name {i}", collection="users") for i in range(1000)))
        names = await asyncio.gather(*(db.get(f"user:{i}", collection="users") for i in range(1000)))
        print(f"1000 writes and 1000 reads in {time.perf_counter() - start:.2f} s; user:7 = {names[7]!r}")

        async with db.watch(collection="users") as changes:
            await db.set("user:7", "renamed", collection="users")
            event = await changes.next(timeout=5)
            print("changed:", event.key, event.value)

        count = 0
        async for _key, _value in db.scan(collection="users"):
            count += 1
        print("scanned", count, "users")


with dhrt.LocalCluster(nodes=3) as cluster:
    asyncio.run(main(cluster))
