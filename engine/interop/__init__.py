"""Other tools' formats: ``saelens`` writes a bundle's SAE as a SAELens folder; ``neuronpedia`` turns a
unit's dashboard into a Neuronpedia-style feature dict."""
