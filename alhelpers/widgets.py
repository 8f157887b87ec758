"""Interactive controls for the notebooks that set the same parameters papermill sets.

:func:`parameter_controls` builds one widget per parameter from its current value (and optional
choices). Pressing *Apply* writes the chosen values back into the notebook's namespace — the very
variables of the ``parameters`` cell — so the cells below run the same code path whether the
values came from papermill, from editing the cell, or from the widgets. Headless (papermill)
nobody presses the button, so the widgets change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

#: How to run the rest of a notebook, in the menus of Colab and of Jupyter.
RUN_BELOW = ("Now run the cells below — Colab: Runtime ▸ Run after (Ctrl+F10); JupyterLab: Run ▸ Run Selected "
             "Cell and All Below; classic Jupyter: Cell ▸ Run All Below.")
#: How to pick several entries of a multiple-choice list, in every browser.
MULTI_SELECT = "Several at once: hold Ctrl (⌘ on a Mac) and click each, or Shift-click for a range."


def _widget_for(name: str, value: Any, choices: Sequence[Any] | None):
    import ipywidgets as w

    style = {"description_width": "110px"}
    if isinstance(value, bool):
        return w.Checkbox(value=value, description=name, style=style)
    if choices is not None and isinstance(value, (list, tuple)):
        return w.SelectMultiple(options=list(choices), value=tuple(v for v in value if v in choices),
                                description=name, rows=min(8, len(choices)), style=style,
                                layout=w.Layout(width="420px"))
    if choices is not None:
        return w.Dropdown(options=list(choices), value=value if value in choices else choices[0],
                          description=name, style=style)
    if isinstance(value, int):
        return w.BoundedIntText(value=value, min=0, max=10**6, description=name, style=style)
    if isinstance(value, float):
        return w.FloatText(value=value, description=name, style=style)
    return w.Text(value=str(value), description=name, style=style)


def parameter_controls(
    namespace: MutableMapping[str, Any],
    names: Sequence[str],
    *,
    choices: Mapping[str, Sequence[Any]] | None = None,
    on_apply: Callable[[dict[str, Any]], None] | None = None,
):
    """Widgets for the parameters ``names`` of ``namespace`` (pass ``globals()``), with an Apply button.

    Returns the widget box (display it as the cell's last expression). *Apply* writes the values
    into ``namespace`` (lists for multi-selects) and calls ``on_apply`` with them.
    """
    import ipywidgets as w

    choices = dict(choices or {})
    missing = [n for n in names if n not in namespace]
    if missing:
        raise KeyError(f"parameters {missing} are not defined: run the parameters cell first")
    controls = {n: _widget_for(n, namespace[n], choices.get(n)) for n in names}
    button = w.Button(description="Apply", button_style="primary")
    out = w.Output()

    def apply(_=None) -> dict[str, Any]:
        values = {n: (list(c.value) if isinstance(c, w.SelectMultiple) else c.value)
                  for n, c in controls.items()}
        namespace.update(values)
        with out:
            out.clear_output()
            print("parameters set:", ", ".join(f"{k}={v!r}" for k, v in values.items()))
            print(RUN_BELOW)
        if on_apply is not None:
            on_apply(values)
        return values

    button.on_click(apply)
    helps = [w.HTML(f"<small>{MULTI_SELECT}</small>")] if any(
        isinstance(c, w.SelectMultiple) for c in controls.values()) else []
    box = w.VBox([*controls.values(), *helps, button, out])
    box.apply = apply  # lets tests (and scripts) press the button
    return box
