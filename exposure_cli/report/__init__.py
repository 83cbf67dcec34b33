"""Reporting: per-run metrics → a grid's summary with its intervals (`summary.py`), the tables that
summary renders into (`tables.py`), its figures (`plots.py`), the article's numbers to set beside it
(`paper.py`), and the leaderboard of every method of one grid (`leaderboard.py`)."""
