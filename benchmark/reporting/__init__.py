"""Reporting: Markdown tables from evaluation records (the pipeline's, the paper's Tables 1-3 beside the reported
numbers, complexity) and the paper's figures. Reads records, never re-scores; never imports training."""
