"""Drill (variant of broker_restart): the same broker restarts, with the bridge in a shared
subscription (`$share/bridge/...`, mqtt.share_group = "bridge"), as several instances would run.

    r = run(folder, quick=False)

Shows what a shared subscription costs on this mosquitto: after a restart it restores the bridge's
persistent session but not its shared subscription, so what the board publishes before the bridge
subscribes again has no subscriber and is dropped (the probe rows say whether this broker does so).
"""
from tools.drills import broker_restart
from tools.drills.common import Result

NAME = "broker_restart_shared"
TITLE = "Broker restarted under load, bridge in a shared subscription"


def run(folder, quick=False, log=print):
    r = Result(NAME, TITLE, __doc__.split("\n\n")[2].strip())
    return broker_restart.run(folder, quick=quick, log=log, result=r, share_group="bridge")
