"""``python -m agentroute.pool.backends.local_convert GGUF_FILE``: convert a GGUF model into
agentroute's safetensors cache, in a process of its own (:func:`~agentroute.pool.backends.local.convert_apart`).

The backend converts apart so that its process can end at once whatever the conversion is doing:
a thread left inside torch while Python finalizes aborts the process (SIGABRT), and a cold
conversion takes ~30 s. Quiet on failure (exit 1): the caller then loads in its own process, where
the same error is raised and reported. SIGTERM ends it as an exception would, so the half-written
cache folder is removed on the way out.
"""

from __future__ import annotations

import signal
import sys
import warnings


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    warnings.simplefilter("ignore")  # the caller warns, if its own load has to
    try:
        from agentroute.pool.backends.local import LocalModel

        LocalModel.load(argv[0])
    except KeyboardInterrupt:  # a Ctrl-C at the terminal reaches its whole process group
        return 130
    except Exception:
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a child process
    sys.exit(main(sys.argv[1:]))
