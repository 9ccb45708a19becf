"""The node: what one exchange does over its store."""
