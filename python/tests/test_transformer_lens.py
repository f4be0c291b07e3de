"""A checkpoint in TransformerLens (strict=True) computes groklab's own logits."""

from __future__ import annotations

import numpy as np
import pytest

import groklab

torch = pytest.importorskip("torch")
pytest.importorskip("transformer_lens")


def test_transformer_lens_logits_equal_groklab_forward(tmp_path):
    run = groklab.train(preset="quick", out=tmp_path / "q", set={"train.steps": 200},
                        progress=False, plots=False)
    model = groklab.to_transformer_lens(run)
    p = run.config["task"]["p"]
    a, b = np.divmod(np.arange(p * p), p)
    tokens = np.stack([a, b, np.full_like(a, p)], 1)
    ours = run.forward(tokens)
    with torch.no_grad():
        theirs = model(torch.from_numpy(tokens)).double().numpy()
    assert theirs.shape == ours.shape
    # f32 forwards in two engines: within 1e-5 relative (|logit| reaches ~10 here)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=1e-5)
    # the same computation: in f64 on both sides the logits agree to rounding
    with torch.no_grad():
        theirs64 = model.to(torch.float64)(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(theirs64, run.forward(tokens, dtype="float64"), atol=1e-9, rtol=0)
    model = model.to(torch.float32)
    _, cache = model.run_with_cache(torch.from_numpy(tokens[:4]))
    assert cache["blocks.0.attn.hook_pattern"].shape == (4, 4, 3, 3)
