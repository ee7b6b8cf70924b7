"""elmneuron: the Expressive Leaky Memory (ELM) neuron, C++ implementation.

The same public API as the C++ library (include/elmneuron/), over numpy arrays:

Model and configuration
    ModelConfig(num_input, num_output, num_memory=100, ...)   published constructor keywords
    Model(config, seed=0, dtype="float32")                      float32 or float64
    load_model(path, dtype="float32"), save_model(path, model)  *.safetensors, official folders, *.pt
    SparseInput(offsets, channels, values, shape)               input events (the native input form)

Running and training
    y = model.forward(x)                      x: [batch, time, num_input] array or SparseInput
    y, traces = model.forward(x, traces=True) traces["memory"], traces["branch"]
    grads = model.backward(dy)                {name: d loss / d parameter} for the trainable parameters
    grads, dx = model.backward(dy, input_grad=True)
    y = model.infer(x)                        inference only: same output, nothing kept for backward
    s = model.stream(batch=1); y_t = s.step(x_t)   one step per call, state kept (Stream)
    Optimizer(model, kind="adam", lr=1e-3).step(model, grads)
    LRSchedule, clip_grad_norm, bce_with_logits, mse, cross_entropy_last_step, neuronio_loss,
    last_step_accuracy

Files
    read_safetensors(path) -> (tensors, metadata), write_safetensors(path, tensors, metadata=None),
    parse_safetensors(bytes), serialize_safetensors(tensors, metadata=None),
    read_torch_state_dict(path) -> tensors, read_npy(path), write_npy(path, array)

Memory: model.state_dict(), model.parameters() and model.parameter(name) are numpy views of the
model's parameters (writing to them changes the model; the views keep the model alive). Arrays from
the readers are views of the buffers read (no further copy). Copies happen for dense input (converted
to events), arrays of another dtype or layout, traces, gradients passed to Optimizer.step, and tensors
given to the writers.

Errors: invalid input raises elmneuron.Error, a ValueError with attributes file, field, expected, got
and hint; a missing file raises FileNotFoundError.
"""

from ._elmneuron import (
    Error,
    LRSchedule,
    Model,
    ModelConfig,
    Optimizer,
    SparseInput,
    Stream,
    bce_with_logits,
    clip_grad_norm,
    cross_entropy_last_step,
    last_step_accuracy,
    load_model,
    mse,
    neuronio_loss,
    num_threads,
    parse_safetensors,
    read_npy,
    read_safetensors,
    read_torch_state_dict,
    save_model,
    serialize_safetensors,
    set_num_threads,
    write_npy,
    write_safetensors,
)
from ._elmneuron import __version__

__all__ = [
    "Error",
    "LRSchedule",
    "Model",
    "ModelConfig",
    "Optimizer",
    "SparseInput",
    "Stream",
    "bce_with_logits",
    "clip_grad_norm",
    "cross_entropy_last_step",
    "last_step_accuracy",
    "load_model",
    "mse",
    "neuronio_loss",
    "num_threads",
    "parse_safetensors",
    "read_npy",
    "read_safetensors",
    "read_torch_state_dict",
    "save_model",
    "serialize_safetensors",
    "set_num_threads",
    "write_npy",
    "write_safetensors",
    "__version__",
]
