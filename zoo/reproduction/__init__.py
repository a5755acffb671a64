"""Paper reproductions as data: specs (recipes/reproduction/*.yaml) run at a named scale and rendered into
docs/reproduction.md, the paper's values beside ours. See `tools/reproduce.py`."""
from zoo.reproduction.render import render_document, render_spec
from zoo.reproduction.run import plan, run_spec
from zoo.reproduction.spec import ReproSpec, find_specs, load_spec

__all__ = ["ReproSpec", "find_specs", "load_spec", "plan", "render_document", "render_spec", "run_spec"]
