"""Cloud BMS firmware: runs unchanged on an ESP32 under MicroPython and on the host under CPython."""
