// plotly is not installed; the report shows its per-skill table only.
