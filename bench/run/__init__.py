"""The parts of a run, in the order a run meets them. `bench.run.runner.run` puts them together.

* `plan`: the cells (models x conditions, plus an efficiency cell per model) and the order they run in;
* `residency`: which models are loaded on the device, and what happens when they do not fit (the out-of-memory
  policy: together, else one model at a time, else the model's cells fail);
* `accuracy`: the accuracy loop, the cells of one condition evaluated together on each batch;
* `efficiency_cells`: the efficiency cell, a suite's cost probe run on one model;
* `manifest`: provenance, what the run is (`run.json`, checked on resume) and what it ran on (`env.json`), and where
  its folder is;
* `outcome`: what became of each cell (`RunResult`, `CellError`, `RunFailed`);
* `progress`: the progress lines (each cell, and the whole run with an estimate of the time left).
"""
