"""Training loops: one market's CF, RQ-VAE and CTR training, above the pure Keras `models` and `eval`.

`models` builds networks only; these modules draw examples (`data`), run optimizer steps and, for CTR,
select the epoch on validation (`eval`). The federated processes reuse the same round functions.
"""
