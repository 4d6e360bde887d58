# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The sketch playground
#
# Draw on the canvas: the photos nearest to your drawing appear below after every stroke. Copy the
# world sketch on the right and watch its photo's rank fall as you draw. Served by `make app`
# (voila, no code shown); the same widgets run in any notebook (`sbir_core.widgets`).

# %%
import json
import os

from sbir_core.repro import setup

setup(seed=0, plots=False)
from sbir_core.widgets import Playground  # noqa: E402

# the URL's query (?method=04_triplet_baseline&gallery=world:shoe&target=3) sets the first choices
# SBIR_PLAYGROUND_OVERRIDES: chapter parameters other than the configs' (e.g. {"SEED": 1}), set by the server
app = Playground.from_query_string(
    os.environ.get("QUERY_STRING", ""),
    scale=os.environ.get("SBIR_SCALE", "ci"),
    overrides=json.loads(os.environ.get("SBIR_PLAYGROUND_OVERRIDES") or "{}"),
)
app.widget
