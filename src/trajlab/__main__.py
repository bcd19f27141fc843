"""``python -m trajlab ...``: the command line, as the ``trajlab`` script."""

from trajlab.cli import main

if __name__ == "__main__":
    main()
