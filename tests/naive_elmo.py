"""A deliberately plain numpy ELMo forward pass, written from ELMO.md alone, to test the model's
general paths (any filters, tanh, no highway, no clips, 1 or 3 layers, skip connections)."""

import numpy as np

from elmo_lm.chars import token_to_ids


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def token_vector(weights, options, token):
    """ELMO.md section 1, steps 1-5, for one token."""
    cnn = options["char_cnn"]
    table = np.concatenate([np.zeros((1, weights["char_embed"].shape[1])), weights["char_embed"]])
    chars = table[token_to_ids(token)]  # (50, e)
    features = []
    for i, (width, count) in enumerate(cnn["filters"]):
        kernel = weights[f"CNN/W_cnn_{i}"][0]  # (width, e, count)
        responses = [np.einsum("we,weo->o", chars[p : p + width], kernel) for p in range(50 - width + 1)]
        pooled = np.max(np.stack(responses), axis=0) + weights[f"CNN/b_cnn_{i}"]
        features.append(np.maximum(pooled, 0) if cnn["activation"] == "relu" else np.tanh(pooled))
    x = np.concatenate(features)
    for k in range(cnn.get("n_highway", 0)):
        gate = sigmoid(x @ weights[f"CNN_high_{k}/W_carry"] + weights[f"CNN_high_{k}/b_carry"])
        x = gate * np.maximum(x @ weights[f"CNN_high_{k}/W_transform"] + weights[f"CNN_high_{k}/b_transform"], 0) \
            + (1 - gate) * x
    return x @ weights["CNN_proj/W_proj"] + weights["CNN_proj/b_proj"]


def language_model(weights, options, vectors, direction):
    """One direction's LSTMP stack over a sequence of token vectors; returns each layer's outputs."""
    lstm = options["lstm"]
    cell_clip, proj_clip = lstm.get("cell_clip"), lstm.get("proj_clip")
    outputs, layer_input = [], vectors
    for layer in range(lstm["n_layers"]):
        prefix = f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/"
        W, B, WP = weights[prefix + "W_0"], weights[prefix + "B"], weights[prefix + "W_P_0"]
        c, m = np.zeros(W.shape[1] // 4), np.zeros(WP.shape[1])
        layer_output = []
        for x in layer_input:
            i, j, f, o = np.split(np.concatenate([x, m]) @ W + B, 4)
            c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j)
            if cell_clip:
                c = np.clip(c, -cell_clip, cell_clip)
            m = (sigmoid(o) * np.tanh(c)) @ WP
            if proj_clip:
                m = np.clip(m, -proj_clip, proj_clip)
            layer_output.append(m + x if layer > 0 and lstm.get("use_skip_connections") else m)
        outputs.append(np.stack(layer_output))
        layer_input = outputs[-1]
    return outputs


def embed(weights, options, tokens):
    """(L+1, n, 2P) for one sentence, from zero state."""
    vectors = np.stack([token_vector(weights, options, t) for t in ["<S>", *tokens, "</S>"]])
    forward = language_model(weights, options, vectors, 0)
    backward = [out[::-1] for out in language_model(weights, options, vectors[::-1], 1)]
    layers = [np.concatenate([vectors, vectors], -1)] + [np.concatenate([f, b], -1) for f, b in zip(forward, backward)]
    return np.stack(layers)[:, 1:-1]
