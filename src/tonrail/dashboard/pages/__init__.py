"""One module per dashboard page; each exports `router` (mounted by dashboard.routes)."""
