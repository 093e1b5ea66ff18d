"""Each consumer's loading code, ported as small functions with the upstream file named, so the
export tests read our files exactly the way the programs people feed them into do."""
