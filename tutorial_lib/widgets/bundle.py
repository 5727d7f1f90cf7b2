"""The bundle every builder returns: controls, a text summary and a live plot that follow each other.

In a notebook cell, :meth:`WidgetBundle.show` displays the controls and a plain image of the initial figure; the
first time a control changes, the live plot (an ``Output`` widget inside the bundle) takes its place and every later
change redraws it in place. The plain image is what GitHub, Colab's preview and any reader without a live kernel
see: widget state is not committed. With ``TRIPLET_HEADLESS=1`` (:func:`tutorial_lib.env.headless`, set by the
notebook build and the notebook tests) the plain image is never replaced, so the committed notebook keeps it.

The kernel draws the live plot by setting the ``Output`` widget's ``outputs`` itself (one figure, replaced in one
step: no flicker, never two figures), never by capturing ``display()`` inside ``with output:``. Capturing needs a
front end to copy each captured message into the widget and send the result back to the kernel; headless runners
(nbclient, so ``jupyter execute``, papermill and the notebook tool) imitate that front end by sending on the
kernel's shell channel in the middle of the cell. With nbclient 0.10/0.11 that send can swallow the wake-up of the
cell's reply, and the run then waits forever with kernel and client idle; with ``store_widget_state=False`` the
imitation raises a bare ``KeyError``. Front ends render ``outputs`` set by the kernel: JupyterLab and Notebook 7
(jupyterlab-widgets) redraw on every change of it, and Colab's widget manager draws from it alone.

Only core ipywidgets (``HTML``, ``Output``, ``VBox``/``HBox``) and ``observe``: works with ipywidgets 7.7 (Colab)
and 8 (JupyterLab). ipywidgets, IPython and matplotlib are imported inside the functions.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from tutorial_lib.env import headless

__all__ = ["WidgetBundle", "new_figure"]


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches, never registered with pyplot.

    Not pyplot: a pyplot figure would be shown a second time at the end of the cell and would pile up in memory;
    a plain ``Figure`` is shown only where a bundle displays it and needs no closing.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _in_kernel() -> bool:
    """True inside a running IPython kernel (a notebook), False in a plain interpreter or under pytest."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _display_data(obj: Any) -> dict[str, Any]:
    """``obj`` as one ``display_data`` output, the form an ``Output`` widget's ``outputs`` hold."""
    import base64

    from IPython import get_ipython
    from IPython.core.formatters import DisplayFormatter

    shell = get_ipython()
    # The kernel's formatter knows the inline figure formats (PNG); a plain interpreter's gives the text form.
    formatter = shell.display_formatter if shell is not None else DisplayFormatter()
    data, metadata = formatter.format(obj)
    # Binary data (the PNG) travels as base64 text, as display() sends it: raw bytes in widget state would become a
    # binary buffer, which front ends do not render as an image.
    data = {mime: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for mime, v in data.items()}
    return {"output_type": "display_data", "data": data, "metadata": metadata}


class WidgetBundle:
    """Controls, a text summary and a figure that follow each other.

    Args:
        controls: name -> control widget, shown in one row in this order.
        compute: ``compute(bundle) -> (state, text, figure)``, called for the initial picture and after every
            change; it reads the controls' ``.value``.
        follow: control name -> ``fn(new_value)`` that updates other controls before the redraw (a new anchor
            brings its own positives); the controls it sets do not redraw on their own, so one change is one redraw.

    Attributes:
        widget: the ``VBox`` to display (controls, summary, live plot).
        controls: name -> control widget (set ``.value`` to drive it from code).
        figure: the current matplotlib ``Figure``.
        state: the numbers behind the current picture (what the tests and checkpoints assert on).
        text: the summary as plain text.
        redraws: how many times the picture was recomputed (the initial draw is 1).
    """

    def __init__(
        self,
        controls: dict[str, Any],
        compute: Callable[[WidgetBundle], tuple[dict, str, Any]],
        follow: dict[str, Callable[[Any], None]] | None = None,
    ):
        import ipywidgets as w

        self.controls = controls
        self._compute = compute
        self._follow = {controls[name]: fn for name, fn in (follow or {}).items()}  # keyed by widget: see _on_change
        self._summary = w.HTML()
        self._out = w.Output()
        self._snapshot = None  # display handle of the plain image shown by show()
        self._quiet = False  # True while a follow function sets other controls (one redraw, not several)
        self.redraws = 0
        self.state: dict[str, Any] = {}
        self.text = ""
        self.figure = None
        row = w.HBox(list(controls.values()))
        self.widget = w.VBox([row, self._summary, self._out])
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self._update(live=False)

    # -- drawing ---------------------------------------------------------------------------------------------
    def _update(self, live: bool) -> None:
        self.state, self.text, self.figure = self._compute(self)
        self.redraws += 1
        self._summary.value = "<div style='font-family:monospace;white-space:pre-wrap'>" + html.escape(
            self.text
        ) + "</div>"
        if not _in_kernel():
            return  # headless test: the numbers and the figure object are all there is
        self._out.outputs = (_display_data(self.figure),)  # not `with self._out: display(...)`: see the module doc
        if live and self._snapshot is not None and not headless():
            # The live plot now shows the same thing as the plain image below it: hide the image.
            from IPython.display import HTML

            self._snapshot.update(HTML(""))
            self._snapshot = None
            self._out.layout.display = None

    def _on_change(self, change: dict) -> None:
        if self._quiet:
            return
        # The change's owner is the widget itself: ipywidgets 7.7 and 8 both pass it, neither passes our name.
        follow = self._follow.get(change["owner"])
        if follow is not None:
            self._quiet = True
            try:
                follow(change["new"])
            finally:
                self._quiet = False
        self._update(live=True)

    # -- display ---------------------------------------------------------------------------------------------
    def show(self) -> None:
        """Display the controls and, as a plain image output, the current figure.

        The plain image stands in for the live plot until a control changes (readers of the committed notebook
        on GitHub or Colab see it; widget state is not stored). The live plot is hidden until then, so a live
        session never shows the picture twice.
        """
        from IPython.display import display

        self._out.layout.display = "none"
        display(self.widget)
        self._snapshot = display(self.figure, display_id=True)

    def _ipython_display_(self) -> None:  # a bundle as the last line of a cell shows itself
        self.show()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.controls)}): {self.text.splitlines()[0] if self.text else ''}"
