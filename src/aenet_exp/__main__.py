"""``python -m aenet_exp``: the command-line entry point."""

from aenet_exp.cli import main

if __name__ == "__main__":
    main()
