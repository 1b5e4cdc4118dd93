"""NATS as supervised actors: the embedded nats-server (`server`, `process`),
the connection that is the only owner of a nats-py client (`connection`), KV
buckets (`kv`) and the hash-chained audit stream (`audit_stream`)."""
