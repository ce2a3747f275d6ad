"""Start real child processes in a test and always stop them, by pid."""

from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess


@contextmanager
def running(*processes: BaseProcess) -> Iterator[tuple[BaseProcess, ...]]:
    """Start ``processes``; on exit SIGTERM (then SIGKILL) whichever still runs.

    Join processes that finish by themselves inside the block: killing one right
    after it put on a multiprocessing Queue can leave the queue's lock held.
    """
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            if process.pid is None:
                continue  # never started
            if process.is_alive():
                process.terminate()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
