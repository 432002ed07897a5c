"""Grafana as code: dashboards (dashboards.py) and alert rules (alerts.py) over InfluxQL, the
generator that writes them for provisioning (generate.py), and Grafana's macro filling (macros.py).

    python -m cloud_bridge.grafana.generate          # after changing dashboards.py or alerts.py
    python -m cloud_bridge.grafana.generate --check
"""
