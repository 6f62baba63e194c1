"""The one exception type for errors a user can cause (bad file, bad value).

The CLIs print its message on one line and exit 2; anything else is a bug and keeps
its traceback.
"""


class FGVCError(Exception):
    """A user-caused error; the message names the file or value and how to fix it."""
