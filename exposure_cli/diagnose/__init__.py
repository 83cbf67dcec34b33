"""`exposure diagnose`: the exposure bias itself, measured on every finished run of an experiment.

Four registered measures (`DIAGNOSTICS`), each a set of per-example ratio statistics of one run
(docs/diagnostics.md defines every number):
- `teacher_forced`: NLL per token and next-token accuracy with the gold prefix (the training condition);
- `robustness`: the same after k target-prefix tokens are replaced by a wrong token, the model's own
  best wrong guess there (`model`) or a uniformly random one (`random`), measured on the gold
  tokens after the k-th replacement against the clean pass on the same tokens; the slope over k
  of the accuracy drop is the model's exposure-bias sensitivity;
- `search`: does the reference score higher than the decoded output (a search error) or lower
  (a model error);
- `beam_curse`: beam-k outputs that score higher than the greedy one but have a lower Rouge-L.

Every score is the model's own teacher-forced scoring of a given target (`UniLM.target_log_probs`
on a `collate`d `[CLS] source [SEP] target` batch), summed as the decoder sums it (log(p + 1e-12)
per token, `decode.LOG_EPS`), so a reference gets the score the decoder would have given it. The
outputs are the token ids and scores the run's decoder wrote (hypotheses.beam{k}.jsonl): nothing is
decoded again on the test split, and a sample of outputs is rescored to check the two agree.

Across runs: per method the mean over seeds, and its difference to baseline paired by seed, with
95% intervals from the seeds × examples variance components (`stats`), each run's ratio statistics
linearised per example (delta method; derived ones through their gradient).

The package, laid out like methods/: `base` (options, `Ratio`, the `Diagnostic` type and its
registry), `scoring` (a target's teacher-forced scores; `Context`, one run's shared passes), one
file per measure (`teacher_forced`, `robustness`, `search`, `beam_curse`), `runs` (loading a run),
`record` (one run diagnosed), `aggregation` (across runs), `tables` and `plots`.
"""

from . import beam_curse, robustness, search, teacher_forced  # noqa: F401  (the measures register)
# What the command and the tests use, as `diagnose.X` (re-exports).
from .aggregation import INTERVAL_NOTE, aggregate, cell, difference, linearised, linearised_derived, method_order
from .base import (CHECK_EXAMPLES, DIAGNOSTICS, KINDS, SPLITS, WINDOWS, Column, Diagnostic, Options, Ratio,
                   check_options, diagnostics, linearise, mean_where, share)
from .beam_curse import BeamCurse, curse_stats
from .plots import PLOTS, write_plots
from .record import RunResult, diagnose_run, options_from_record, read_run_record, recorded_result, write_run_record
from .robustness import Robustness, _inject, injection_plan, slope
from .runs import RunData, finished_runs, load_run_data, read_hypotheses
from .scoring import Context, TokenScores, _pair, reference_targets, score_targets, special_ids
from .search import SearchErrors, search_stats
from .tables import DELTA_GROUP, DELTA_NOTE, matrices, write_report
from .teacher_forced import TeacherForced
