"""Evaluation: many edits × many methods judged by one yardstick, into one table.

A cases file names clips, their edited frames and (optionally) results made elsewhere; every backend or LoRA asked
for is run on every case through `synclora.pipeline.run_propagation`, and every result — ours or outside — is judged
by the sync report's own `compare_videos` plus the pixel measures of `synclora.metrics.pixels`. Rows are written one
file each as they finish, so a stopped run resumes, and ranks of a cluster split the cases like `generate` and
`curate` do. `cases` reads the file, `run` does the work, `table` writes results.json/table.md/table.csv, `grid` the
side-by-side video and plot per case.
"""
