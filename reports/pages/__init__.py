"""One module per report page; each exposes build(ctx) -> Page."""
