"""The one exception type users see: a one-line message naming what is wrong and how to fix it."""


class PdefmError(Exception):
    """Bad input or an unusable file. The CLI prints ``error: <message>`` and exits with 2.

    Messages are one line: what is wrong, then what to do about it.
    """
