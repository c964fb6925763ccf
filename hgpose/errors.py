"""One exception type for problems the user can fix (bad input, bad options).

The CLI prints these as a single line and exits non-zero; everything else is a bug and
keeps its traceback.
"""


class HgposeError(Exception):
    """A problem with the user's input: the message names the file/field and what to do."""
