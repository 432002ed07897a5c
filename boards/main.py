"""/main.py on the board: runs the BMS firmware (firmware/app.py) from /board.json and /config.json.

    mpremote connect PORT cp boards/main.py :main.py     # tools/flash.py copies it; `mpremote reset` starts it
    # Ctrl-C (or mpremote) interrupts it and leaves the board at the REPL.
"""
from firmware.log import LOG

LOG.echo = True             # the ring log is also printed on the console (USB serial), at boot and on events
print("main.py: starting the BMS firmware")
from firmware.app import main  # noqa: E402  (after the echo switch: boot messages are logged too)

main()
