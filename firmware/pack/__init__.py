"""Pack logic: protection, state machine, SOC/SOH. Never imports `machine`."""
