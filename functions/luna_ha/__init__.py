"""Luna HSM HA groups as code."""
