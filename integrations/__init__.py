"""One module per outside system. Nothing here imports `commands` or `bot`."""
