"""``python -m vmr_cli``, and the ``vmr`` command (pyproject's entry point)."""

import signal

from .errors import exit_at_once, on_signal


def main():
    # From the first instant: loading vmr takes a fraction of a second, Ctrl-C in it gave a traceback
    on_signal(signal.SIGINT, exit_at_once)
    on_signal(signal.SIGTERM, exit_at_once)
    from .cli import main as run

    run()


if __name__ == "__main__":
    main()
