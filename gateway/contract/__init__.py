"""What the control plane and the gateway agree on, with no Django: Redis key names
(keys.py), the route's signature text (signature.py), the usage-event format (usage.py),
API-key hashing (hashing.py), every Lua script (lua/, loaded by scripts.py) and the error
type a user can act on (errors.py).

The control plane writes the Redis projection through these names; the gateway reads it
and writes its counters and usage events with the scripts. This package is the lowest
layer: it imports nothing of the platform (docs/architecture.md)."""
