"""The ``winnow`` command's entry point, for the installed script and ``python -m winnow``.

The CLI is imported inside a Ctrl-C guard: its libraries take a moment to load, and a Ctrl-C in
that moment should end the command as it does later, with one line and exit status 130, not a
traceback from deep inside an import.
"""

import os
import sys


def main() -> None:
    try:
        from winnow import cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was written\n")
        sys.stderr.flush()
        os._exit(130)
    cli.main()


if __name__ == "__main__":
    main()
