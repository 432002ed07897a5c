"""The virtual board: a pseudo-terminal that behaves like a MicroPython ESP32 on USB serial (see __main__).

    python -m tools.virtualboard --dir /tmp/vb --board sim16_lfp     # prints the port, e.g. /dev/pts/5
    mpremote connect /tmp/vb/tty ls                                  # then mpremote / make flash as usual
"""
