"""The replicated scheduler state machine: commands in, deterministic state out."""
