"""A run folder's figures drawn in helper processes, off the command's critical path.

``optctl solve`` starts :class:`FigureWorker` as soon as its config is validated: two
more Python processes (one on a single core) that lower their own priority (nice
``HELPER_NICE``) and import matplotlib and :mod:`optctl.plots` (about half a CPU second
each) on whatever core time the solve leaves idle, then wait. When
the run folder is written, the figures' inputs (arrays and titles, no solver objects)
are sent through pipes, shared out between the helpers; they draw and save them into the
staged folder side by side while the first process writes the arrays, and the folder is
renamed into place only when all are done. Matplotlib never shares a process (or its
interpreter lock) with CasADi or the array compression.

If a helper cannot be started, dies, or reports an error, its figures are drawn in
the calling process instead, so a run folder is never left without them.

    python -m optctl.io.drawing     # the helper itself: one pickled job on stdin
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A figure's inputs: the plots function's name, its positional and keyword arguments.
Figure = tuple[str, tuple[Any, ...], dict[str, Any]]
# Helper processes of a FigureWorker (a run folder has two or three figures).
HELPERS = 2
# The helpers' niceness: their imports, made while the solve runs, take mostly the core time
# that the solve, its kernels' loads and its threaded probes leave idle. When the figures
# are drawn the command only waits for them, so on an idle machine the lower priority
# costs nothing; on a machine whose cores are all busy the figures wait for a core longer.
HELPER_NICE = 10


def draw(folder: Path, figures: Mapping[str, Figure]) -> list[Path]:
    """Draw every figure of ``figures`` (file name → inputs) into ``folder``, in this process."""
    from optctl import plots  # matplotlib, only when drawing

    done = []
    for name, (fn, args, kwargs) in figures.items():
        plots.save(getattr(plots, fn)(*args, **kwargs), folder / name)
        done.append(folder / name)
    return done


class FigureWorker:
    """The helper processes (module docstring). Start them early, :meth:`submit` one job,
    :meth:`wait` for it; :meth:`close` (or leaving the ``with`` block) ends any still running.

    ``helpers`` processes (default: two, one on a single core) share the job's figures,
    the first figure to the first helper and so on: a run's figures cost about 0.3 s each
    to lay out and render, and several helpers draw them side by side on the cores the
    finished solve has left free. The helpers start at a lower priority (``HELPER_NICE``),
    so that loading matplotlib takes little core time from the solve (a nice-10 process
    gets about a tenth of a core that a normal one also wants)."""

    def __init__(self, helpers: int | None = None) -> None:
        self._job: tuple[Path, Mapping[str, Figure]] | None = None
        if helpers is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            helpers = min(HELPERS, max(1, cores))
        # the helpers import this very copy of optctl, however this process found it
        here = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        self._procs: list[subprocess.Popen[bytes] | None] = []
        for _ in range(max(1, helpers)):
            try:
                self._procs.append(subprocess.Popen(
                    [sys.executable, "-m", "optctl.io.drawing"], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path}))
            except OSError:
                self._procs.append(None)

    def submit(self, folder: Path, figures: Mapping[str, Figure]) -> None:
        """Send the job; each helper starts drawing its share as soon as it has read it."""
        self._job = (folder, figures)
        names = list(figures)
        for i, proc in enumerate(self._procs):
            if proc is None or proc.stdin is None:
                continue
            share = {n: figures[n] for n in names[i::len(self._procs)]}
            try:
                if share:
                    pickle.dump((str(folder), share), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                proc.stdin.close()  # an empty share: the helper ends without drawing
            except (OSError, pickle.PicklingError):
                self._stop(i)

    def wait(self) -> list[Path]:
        """Wait for the helpers; draw here whatever they did not draw. Returns the files."""
        if self._job is None:
            raise RuntimeError("FigureWorker.wait() before submit()")
        folder, figures = self._job
        for i, proc in enumerate(self._procs):
            if proc is None:
                continue
            err = proc.stderr.read() if proc.stderr is not None else b""
            if proc.wait() != 0:
                if err:
                    print(f"note: a figure helper failed ({err.decode(errors='replace').strip()[-200:]}); "
                          "drawing its figures in this process", file=sys.stderr)
            self._procs[i] = None
        missing = {n: f for n, f in figures.items() if not (folder / n).is_file()}
        if missing:
            draw(folder, missing)
        return [folder / n for n in figures]

    def close(self) -> None:
        """End the helpers still running (the command failed before :meth:`wait`), so that
        nothing is drawn into a folder that is being removed."""
        for i in range(len(self._procs)):
            self._stop(i)

    def _stop(self, i: int) -> None:
        proc = self._procs[i]
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
                for pipe in (proc.stdin, proc.stderr):
                    if pipe is not None:
                        pipe.close()
            proc.wait()
            self._procs[i] = None

    def __enter__(self) -> FigureWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve() -> int:
    with contextlib.suppress(OSError):  # a lower priority is a preference, not a need
        os.nice(HELPER_NICE)
    from optctl import plots  # noqa: F401  (the import is the point: done before the job comes)

    try:
        folder, figures = pickle.load(sys.stdin.buffer)
    except EOFError:  # the command ended without a run folder to draw
        return 0
    draw(Path(folder), figures)
    return 0


if __name__ == "__main__":
    # The figures are saved (each file renamed into place): skip the interpreter's teardown
    # of matplotlib, which the command would otherwise wait for.
    code = _serve()
    sys.stderr.flush()
    os._exit(code)
