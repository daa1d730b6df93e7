{{ serving_contexts() }}
