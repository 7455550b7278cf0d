"""A run folder's figures drawn in a helper process, off the command's critical path.

``optctl solve`` starts :class:`FigureWorker` as soon as its config is validated: a second
Python process that imports matplotlib and :mod:`optctl.plots` (about half a second)
while the first one solves, then waits. When the run folder is written, the figures'
inputs (arrays and titles, no solver objects) are sent to it through a pipe; it draws
and saves them into the staged folder while the first process writes the arrays, and
the folder is renamed into place only when both are done. Matplotlib never shares a
process (or its interpreter lock) with CasADi or the array compression.

If the helper cannot be started, dies, or reports an error, the figures are drawn in
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


def draw(folder: Path, figures: Mapping[str, Figure]) -> list[Path]:
    """Draw every figure of ``figures`` (file name → inputs) into ``folder``, in this process."""
    from optctl import plots  # matplotlib, only when drawing

    done = []
    for name, (fn, args, kwargs) in figures.items():
        plots.save(getattr(plots, fn)(*args, **kwargs), folder / name)
        done.append(folder / name)
    return done


class FigureWorker:
    """The helper process (module docstring). Start it early, :meth:`submit` one job,
    :meth:`wait` for it; :meth:`close` (or leaving the ``with`` block) ends it if it is
    still running."""

    def __init__(self) -> None:
        self._job: tuple[Path, Mapping[str, Figure]] | None = None
        # the helper imports this very copy of optctl, however this process found it
        here = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "optctl.io.drawing"], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path})
        except OSError:
            self._proc = None

    def submit(self, folder: Path, figures: Mapping[str, Figure]) -> None:
        """Send the job; the helper starts drawing as soon as it has read it."""
        self._job = (folder, figures)
        if self._proc is None or self._proc.stdin is None:
            return
        try:
            pickle.dump((str(folder), dict(figures)), self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.close()
        except (OSError, pickle.PicklingError):
            self._stop()

    def wait(self) -> list[Path]:
        """Wait for the helper; draw here whatever it did not draw. Returns the files."""
        if self._job is None:
            raise RuntimeError("FigureWorker.wait() before submit()")
        folder, figures = self._job
        ok = False
        if self._proc is not None:
            err = self._proc.stderr.read() if self._proc.stderr is not None else b""
            ok = self._proc.wait() == 0
            self._proc = None
            if not ok and err:
                print(f"note: the figure helper failed ({err.decode(errors='replace').strip()[-200:]}); "
                      "drawing the figures in this process", file=sys.stderr)
        missing = {n: f for n, f in figures.items() if not (ok and (folder / n).is_file())}
        if missing:
            draw(folder, missing)
        return [folder / n for n in figures]

    def close(self) -> None:
        """End the helper if it is still running (the command failed before :meth:`wait`), so
        that nothing is drawn into a folder that is being removed."""
        self._stop()

    def _stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
                for pipe in (self._proc.stdin, self._proc.stderr):
                    if pipe is not None:
                        pipe.close()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> FigureWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve() -> int:
    from optctl import plots  # noqa: F401  (the import is the point: done before the job comes)

    try:
        folder, figures = pickle.load(sys.stdin.buffer)
    except EOFError:  # the command ended without a run folder to draw
        return 0
    draw(Path(folder), figures)
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
