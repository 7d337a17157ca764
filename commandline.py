"""What every command line here shares: one-line option errors, help that keeps words whole,
--version, Ctrl-C and SIGTERM as a request to stop and save, and expected failures as one line.

    parser = commandline.OneLineErrors(description='...')      # argparse, each error one line, exit 2
    sys.exit(commandline.command_line(main, argv))             # main(argv, stop): its code; InputError: 2

No TensorFlow: every script parses its options before it loads.
"""
import argparse
import contextlib
import faulthandler
import os
import signal
import sys
import threading

import utils
from utils import InputError


class OneLineErrors(argparse.ArgumentParser):
    """argparse, but a bad option is one line (with a pointer to --help), not usage + error, and
    help text never breaks a word (a layer list stays conv3_1, not conv3 _1)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=WholeWords, **kwargs)
        self.add_argument('--version', action='version', version=f'%(prog)s {utils.project_version()}')

    def error(self, message):
        line = f"{self.prog}: error: {message} (see --help)"
        print(line, file=sys.stderr)
        raise OptionError(line, message)


class OptionError(SystemExit):
    """A bad option: exit code 2, as argparse's; `line` is the message shown (the API raises it),
    `message` the part that says what is wrong."""

    def __init__(self, line, message):
        super().__init__(2)
        self.line, self.message = line, message


class WholeWords(argparse.HelpFormatter):
    def _split_lines(self, text, width):
        import textwrap
        return textwrap.wrap(' '.join(text.split()), width, break_long_words=False, break_on_hyphens=False)


def report_crashes():
    """A crash inside TensorFlow's C++ code then still prints the Python lines it came from."""
    if not faulthandler.is_enabled() and sys.__stderr__ is not None:  # pytest and -X faulthandler have it on
        faulthandler.enable(file=sys.__stderr__)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; `kill`, or a batch scheduler's time limit


@contextlib.contextmanager
def stop_requests(after='this step'):
    """Within this block Ctrl-C and SIGTERM ask the run to stop; yields a threading.Event they set.

    The run checks the event between steps and then stops as if interrupted, saving its work.
    Python's default Ctrl-C raises KeyboardInterrupt at whatever bytecode is running, inside
    TensorFlow's own Python code too; a run stopped that way in CI once died of a segmentation
    fault before saving anything. A second signal still raises at once, for a step that takes
    too long. SIGTERM is what SLURM sends at its time limit. Outside the main thread (where
    handlers cannot be set) the event is never set.
    """
    requested = threading.Event()
    message = f"stopping after {after} and saving (Ctrl-C again to stop now)\n".encode()
    terminal = os.dup(2)  # fd 2 itself may be in quiet_stderr's capture file when the signal comes

    def stop(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        # os.write, not print: a print here, while the loop is inside sys.stderr.write (the
        # progress bar), would raise "reentrant call" at that point in the loop.
        with contextlib.suppress(OSError):
            os.write(terminal, message)

    try:
        previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield requested
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        os.close(terminal)


def command_line(main, argv=None, after='this step', interrupted='interrupted', errors=(), by_name=None):
    """`main(argv, stop)` as a command (stop: stop_requests' event): its exit code, and every
    expected failure one line on stderr, not a traceback. InputError and `errors` exit 2, as
    a bad option does; so do exceptions whose type name `by_name` maps to their line (types
    of modules that may not be loaded yet: TensorFlow's). Ctrl-C or SIGTERM that ends the
    run before its steps: `interrupted` and 130."""
    report_crashes()
    try:
        with stop_requests(after) as stop:
            return main(argv, stop)
    except (InputError, *errors) as error:
        print(f"error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as error:
        if type(error).__name__ not in (by_name or {}):
            raise
        print(f"error: {by_name[type(error).__name__]}", file=sys.stderr)
    return 2
