"""Running experiments: a run directory's layout (`rundir.py`), a spec's grid of runs handed to an
executor (`grid.py`), kept runs committed as they finish (`commit.py`), a campaign of seed blocks run
to a stated precision (`campaign.py`), and an ablation screen of one toggle at a time (`screen.py`)."""
