"""The network and its weights: the two-stage U-Net in Keras 3 (`network`), checkpoint
formats (`tf_checkpoint`: the authors'; `native`: histdenoise's own), `loading` (one entry
point for every kind), `export` (ONNX via `onnx_graph`, and SavedModel) and `introspect`
(the stages and attention masks, for teaching).

Every module here imports Keras (and so a backend: TensorFlow by default). The runtime
core imports them only inside the functions that need them, so that denoising with ONNX
Runtime needs no TensorFlow. What a model *is* (its config and card) is in
`histdenoise.card`, which imports neither.

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""
