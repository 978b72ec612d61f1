"""``python -m agentroute``: the ``agentroute`` command, for environments without its script on PATH."""

from agentroute.cli import main

if __name__ == "__main__":
    main()
