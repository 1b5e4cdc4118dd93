"""Actors in other processes: a gateway per system, and refs that cross NATS
(only messages an actor exports for remote use cross the wire)."""
