"""``python -m sequencer``: the CLI lives in the process package; no library module imports this."""

from workers.cli import main

main()
