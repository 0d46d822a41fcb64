"""The results contract: what a run writes and what the report, the regression check and the Python API read.

Torch-free, so that `segbench.reports` and `segbench compare` never load torch. One module per concern:

* `axes`: Cityscapes-C corruptions, categories and severities, the real adverse-condition datasets, and `Condition`;
* `classes`: the class table as a value (`ClassTable`: names in train-id order, colours, ignore index; `CITYSCAPES`);
* `schema`: the row's columns, the typed `Row` and its one builder `make_row`, every metric name with its unit and
  direction (`METRICS`), deployment variant names, the schema version;
* `files`: the schema of every JSON file segbench reads back, and the one reader that names a damaged file in one line;
* `io`: the one atomic writer, the tidy CSV files, the regression history;
* `targets`: output paths a user names, checked before a write (what is there; only the writer's own kind is
  replaced);
* `summaries`: robustness (mPC, rPC, mCE), real-world drops and deployment deltas, derived from tidy rows;
* `store`: the run folder (cells, run.json, env.json), its reader (`read_run`) and the resume check.
"""
