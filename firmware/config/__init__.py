"""Configuration: defaults, chemistry presets, validation, atomic persistence."""
