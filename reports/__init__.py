"""HTML reports and regression checks built from asv's results store and the run records beside it.

`python -m reports build` writes a static site; `python -m reports regressions` compares two runs.
Only numpy/pandas/matplotlib/jinja2/asv are used here: never torch or TensorFlow.
"""
