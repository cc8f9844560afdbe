"""Numbers and their presentation: score metrics, caption metrics, tables, CSV files and plots."""
