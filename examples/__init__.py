"""Examples: actors that show the runtime at work. Never part of the production tree."""
