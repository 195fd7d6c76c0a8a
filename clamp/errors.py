"""Error types that clamp raises for bad user input.

Why this file exists: every validation failure (a config field out of range, an
unknown hook name, a malformed study file) surfaces as one of these, with a
message naming the problem and the fix, before any training starts.
"""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""
