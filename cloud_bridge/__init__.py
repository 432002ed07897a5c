"""The cloud bridge: MQTT (shared subscription, manual acks) -> verify, decode -> InfluxDB.

Modules, one job each: settings (typed settings), mqtt_consumer (paho session), verify (keys, tags,
replay window), mapper (pure frame -> points), writer (batching, retries, v1/v2 APIs), rejects (bad
messages kept aside), registry (devices, SQLite), metrics, log (JSON lines), service (the loop),
cli_* (subcommands of `cloud-bridge`). Schema: docs/influx-schema.md.

    cloud-bridge run --config bridge.toml          # or: python -m cloud_bridge run ...
    python -m cloud_bridge --help
"""
