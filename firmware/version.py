"""Firmware version, reported in the status frame."""
FIRMWARE_VERSION = "0.1.0"
