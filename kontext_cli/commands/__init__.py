"""One module per noun. Each adds its commands to the typer app and stays thin:
parse, call the daemon, render."""
