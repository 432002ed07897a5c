"""Real servers started by tests on free loopback ports in temporary folders (CPython only).

    from tools.testservers.mosquitto import Mosquitto
    with Mosquitto(tmp_path) as broker: print(broker.host, broker.port)
"""
