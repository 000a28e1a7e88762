"""Read-side views shared by the CLI and the API: the run record and the graph renderings."""
