"""A client of a running node. Start one first:

    python -m dhrt serve --memory        # or: dhrt serve --memory
    python python/examples/connect.py ws://127.0.0.1:7453
"""

import sys

import dhrt

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:7453"
try:
    db = dhrt.connect(url, timeout=5.0)
except dhrt.ConnectionError as e:
    sys.exit(f"{e}")

with db:
    db.set("hello", "world")
    print("hello =", db.get("hello"))
    for member in db.ring():
        print(f"member {member.id:016x} at {member.addr}: {member.status}, {len(member.tokens)} tokens")
    try:
        db.set("k", "v", consistency="most")
    except dhrt.InvalidInputError as e:
        print("refused before sending:", e)
