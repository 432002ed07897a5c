"""Host stand-in package for micropython-lib's `umqtt` (only `umqtt.simple`). CPython only; never deployed.

    from umqtt.simple import MQTTClient, MQTTException
    c = MQTTClient("dev1", "127.0.0.1", 1883); c.connect(timeout=5)
"""
