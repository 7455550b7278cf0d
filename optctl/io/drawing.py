"""A run folder's figures drawn in a helper process, off the command's critical path.

``optctl solve`` starts :class:`FigureWorker` as soon as its config is validated: one
more Python process that lowers its own priority (nice ``HELPER_NICE``) and imports
matplotlib, its PNG backend and :mod:`optctl.plots` (about half a CPU second) on whatever
core time the solve leaves idle, then waits. When the run folder is written, the figures'
inputs (arrays and titles, no solver objects) are sent through a pipe; the helper forks
one process per figure beyond the first (each inherits the imports, so a figure costs
only its own drawing, about 0.3 s) and they draw and save the figures into the staged
folder side by side while the first process writes the arrays; the folder is renamed
into place only when all are done. Matplotlib never shares a process (or its interpreter
lock) with CasADi or the array compression. Where ``os.fork`` is missing the helper draws
its figures one after the other; ``FigureWorker(helpers=n)`` starts ``n`` helpers and
shares the figures out between them instead.

If a helper cannot be started, dies, or reports an error, its figures are drawn in
the calling process instead, so a run folder is never left without them.

    python -m optctl.io.drawing     # the helper itself: one pickled job on stdin
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A figure's inputs: the plots function's name, its positional and keyword arguments.
Figure = tuple[str, tuple[Any, ...], dict[str, Any]]
# Helper processes of a FigureWorker. One: it forks a process per further figure, which
# inherits its imports (a second helper cost a second import of matplotlib, about half a
# CPU second that a two-core machine took from the solve).
HELPERS = 1
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

    ``helpers`` processes (default ``HELPERS``, one) share the job's figures, the first
    figure to the first helper and so on; each draws its share side by side in forked
    processes: a run's figures cost about 0.3 s each to lay out and render, and they are
    drawn on the cores the finished solve has left free. The helpers start at a lower
    priority (``HELPER_NICE``), so that loading matplotlib takes little core time from the
    solve (a nice-10 process gets about a tenth of a core that a normal one also wants)."""

    def __init__(self, helpers: int | None = None) -> None:
        self._job: tuple[Path, Mapping[str, Figure]] | None = None
        helpers = HELPERS if helpers is None else helpers
        # the helpers import this very copy of optctl, however this process found it
        here = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        self._procs: list[subprocess.Popen[bytes] | None] = []
        for _ in range(max(1, helpers)):
            try:
                # a session of its own: the helper and its forks end together (_stop), and a
                # Ctrl-C meant for the command is the command's to handle
                self._procs.append(subprocess.Popen(
                    [sys.executable, "-m", "optctl.io.drawing"], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path},
                    start_new_session=hasattr(os, "killpg")))
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
            if hasattr(os, "killpg"):
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the helper and any figure it forked
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
    # The import is the point (matplotlib and its PNG backend): done before the job comes,
    # and shared by the forks below.
    from optctl import plots  # noqa: F401

    try:
        folder, figures = pickle.load(sys.stdin.buffer)
    except EOFError:  # the command ended without a run folder to draw
        return 0
    names = list(figures)
    children = []
    if hasattr(os, "fork"):
        for name in names[1:]:
            pid = os.fork()
            if pid == 0:  # the child: one figure, then out without the interpreter's teardown
                code = 0
                try:
                    draw(Path(folder), {name: figures[name]})
                except BaseException:  # said on stderr, which the command reads
                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stderr.flush()
                    os._exit(code)
            children.append(pid)
    draw(Path(folder), {n: figures[n] for n in (names[:1] if children else names)})
    # a failed child's figure is missing: FigureWorker.wait draws it in the command
    failed = [pid for pid in children if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    # The figures are saved (each file renamed into place): skip the interpreter's teardown
    # of matplotlib, which the command would otherwise wait for.
    code = _serve()
    sys.stderr.flush()
    os._exit(code)
