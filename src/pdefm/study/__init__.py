"""Studies: a YAML file that expands into datasets, pre-training stages and downstream runs."""
