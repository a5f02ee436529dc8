"""The command-line layer every command shares: configs (defaults < TOML < flags),
one-line errors, the device, and loading a trained model for a tool."""
