"""The engine: encoder, video index, co-occurrence, factors, ranker, and the faust agents."""
