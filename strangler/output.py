"""Writing a document (a report) to stdout or to a file named on the command line."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from strangler.errors import OperatorError


def write_document(text: str, output: str | None) -> bool:
    """TEXT to stdout, or to OUTPUT whole: written beside it, then renamed, so a reader (a CI
    job, a browser reloading) never sees half a report. The file gets the usual mode (0666
    less the umask), as any file the operator writes would. True when written to a file."""
    if not output:
        sys.stdout.write(text)
        return False
    target = Path(output)
    folder = target.parent
    if not folder.is_dir():
        raise OperatorError(f"{output}: folder {folder} does not exist; create it or pick "
                            "another path for -o")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.")
    except OSError as exc:
        raise OperatorError(f"{output}: cannot write in {folder} ({exc.strerror}); pick "
                            "another path for -o") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except IsADirectoryError:
        Path(tmp).unlink(missing_ok=True)
        raise OperatorError(f"{output} is a folder; give a file name for -o") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
