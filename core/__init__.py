"""Helpers shared by the command-line tools: configs, checkpoints, schedules, errors."""
