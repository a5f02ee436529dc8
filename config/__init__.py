"""What configures a command: its keys (settings, parsing), the device and output paths they name,
and the one-line error for a bad one."""
