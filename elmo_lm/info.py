"""`elmo info`: a model described in rows of (what, value): sizes, parameters, and whether bfloat16 pays here."""

from __future__ import annotations

from pathlib import Path

from .bundled import bundled_model_path, open_model
from .cpu_features import bfloat16_is_fast, bfloat16_runs


def model_info(model_dir: str | Path | None = None, options_file: str | Path | None = None,
               weight_file: str | Path | None = None) -> list[tuple[str, str]]:
    """Describe the model named (the bundled one when none is): its source, shape, parameter counts
    and softmax, and whether this CPU runs bfloat16 matmuls faster than float32."""
    model = open_model(model_dir, options_file, weight_file)
    if model_dir is None and options_file is None and weight_file is None:  # as open_model decides
        model_dir = f"{bundled_model_path()} (bundled)"
    config = model.config
    encoder = sum(p.numel() for p in model.token_encoder.parameters())
    lstm = sum(p.numel() for p in model.lstm.parameters())
    softmax = sum(p.numel() for p in model.softmax.parameters()) if model.softmax is not None else 0
    return [
        ("model", str(model_dir or weight_file)),
        ("character CNN", f"char dim {config.char_embed_dim}, {len(config.filters)} filters, "
                          f"{config.n_filters} features, {config.activation}"),
        ("highway layers", str(config.n_highway)),
        ("LSTM", f"{config.n_layers} layers x 2 directions, cell {config.lstm_dim}, projection "
                 f"{config.projection_dim}, skip connections {'yes' if config.use_skip_connections else 'no'}"),
        ("clips", f"cell {config.cell_clip or 'none'}, projection {config.proj_clip or 'none'}"),
        ("output", f"{config.n_output_layers} layers of width {config.output_dim}"),
        ("parameters", f"{encoder + lstm:,} (token encoder {encoder:,}, LSTMs {lstm:,})"),
        ("softmax", f"{model.softmax.out_features:,} words, {softmax:,} parameters" if softmax else "none"),
        ("bfloat16 here", bfloat16_here()),
    ]


def bfloat16_here() -> str:
    """The verdict on `--precision bfloat16` for this CPU."""
    if not bfloat16_runs():
        return "not supported (no AVX-512 BW/VL/DQ, no AVX-NE-CONVERT): --precision bfloat16 runs float32"
    if bfloat16_is_fast():
        return "faster than float32 (AMX or AMD AVX-512 BF16)"
    return "likely no faster than float32 (no AMX, no AMD AVX-512 BF16): use float32"
