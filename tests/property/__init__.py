"""Property tests (hypothesis): the loader, the condition parser and engine decisions."""
