"""Cell balancing policy: which cells bleed, when, and for how long."""
