#pragma once
// Losses over model outputs y [B][T][d_o]. Each returns the loss value and writes (=) d loss/d y into
// dy (same shape), so that model::backward can take it directly. Means follow torch's 'mean' reduction.

#include <cstdint>
#include <span>

namespace elm {

// mean over all elements of BCEWithLogits(logit, target), torch's numerically stable form.
template <class T>
double bce_with_logits(std::span<const T> logits, std::span<const T> targets, std::span<T> dlogits);

// mean over all elements of (pred - target)^2.
template <class T>
double mse(std::span<const T> pred, std::span<const T> targets, std::span<T> dpred);

// Cross-entropy of the last time step's logits y[:, T-1, :] against integer labels (torch CrossEntropyLoss,
// mean over the batch). dy is zero except at the last step. Labels outside [0, d_o) throw elm::error.
template <class T>
double cross_entropy_last_step(std::span<const T> y, int batch, int time, int num_output,
                               std::span<const std::int32_t> labels, std::span<T> dy);

// NeuronIO: 0.5·BCEWithLogits(y[...,0], spike) + 0.5·MSE(y[...,1], soma), each a mean over the batch and
// the steps t >= burn_in (burn_in = 0: the published training loss; paper: 150). y has d_o >= 2 columns;
// other columns get zero gradient. spike and soma are [B][T].
template <class T>
double neuronio_loss(std::span<const T> y, int batch, int time, int num_output, std::span<const T> spike,
                     std::span<const T> soma, int burn_in, std::span<T> dy);

// Accuracy helper for classification: fraction of samples whose last-step argmax equals the label.
template <class T>
double last_step_accuracy(std::span<const T> y, int batch, int time, int num_output,
                          std::span<const std::int32_t> labels);

}  // namespace elm
