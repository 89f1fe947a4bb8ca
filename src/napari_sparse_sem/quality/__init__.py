"""Quality of data and results without ground truth."""
