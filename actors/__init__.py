"""The system's actors, one subpackage per subject:

- `nats`: the embedded nats-server, the connection, KV buckets, the audit stream;
- `remote`: the gateway and remote refs;
- `app`: the main process (config, the default tree, the CLI).

Each builds on `exoarmur.runtime` and `exoarmur.supervisors` only through
their public names."""
