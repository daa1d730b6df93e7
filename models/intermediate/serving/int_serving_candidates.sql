{{ serving_candidates() }}
