"""Training: the run, its optimizer and callbacks, the run folder, the precision probe,
evaluation on records and the benchmark library."""
