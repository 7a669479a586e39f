"""Optional integrations with other libraries; each imports its library lazily (see the package extras)."""
