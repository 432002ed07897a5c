"""Drill (control for broker_restart): the same broker restarts, but after each one the board waits
until the bridge has subscribed again before it reconnects and publishes.

    r = run(folder, quick=False)

Separates the two causes of loss a broker restart could have: if this variant loses nothing while
broker_restart does, the board's outbox, QoS 1 and the broker's persistence are sound, and the loss is
the window between the broker's restart and the bridge's new subscription.
"""
from tools.drills import broker_restart
from tools.drills.common import Result

NAME = "broker_restart_bridge_first"
TITLE = "Broker restarted under load, bridge subscribed before the board reconnects (control)"


def run(folder, quick=False, log=print):
    r = Result(NAME, TITLE, __doc__.split("\n\n")[2].strip())
    return broker_restart.run(folder, quick=quick, log=log, bridge_first=True, result=r)
