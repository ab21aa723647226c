"""``vidrec serve``: the pull API, its local store of the topics, and the live dashboard."""
