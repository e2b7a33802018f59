"""The fast-math rewrites: GELU by fast erf, and a power by a small whole constant as multiplications."""

import numpy as np
import pytest
import torch

from core.tvm.fast_math import fast_math_pass
from core.tvm.relax_import import export_model, to_relax


class Powers(torch.nn.Module):
    def forward(self, input_ids, attention_mask):
        x = input_ids.float() / 7.0 - attention_mask.float()
        return torch.pow(x, 3.0) + torch.pow(x, 2.0) + torch.pow(x.abs() + 1.0, 0.5)  # 0.5: left as a power


def _ops(mod) -> list[str]:
    return [line for line in mod.script().splitlines() if "R.power" in line]


@pytest.mark.slow  # builds with TVM
def test_whole_powers_become_multiplications_and_match_torch():
    import tvm
    from tvm import relax

    from core.tvm.target import host_target

    ids = torch.arange(-8, 8).reshape(1, 16)
    mask = torch.ones(1, 16, dtype=torch.int64)
    mod = to_relax(export_model(Powers(), {"input_ids": ids, "attention_mask": mask}))
    assert len(_ops(mod)) == 3
    rewritten = fast_math_pass()(mod)
    left = _ops(rewritten)
    assert len(left) == 1 and "0.5" in left[0]  # only the square root stays a power
    executable = tvm.compile(rewritten, host_target(1))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(ids.numpy()), tvm.runtime.tensor(mask.numpy()))
    out = out if hasattr(out, "numpy") else out[0]  # a one-tensor tuple when the graph returns a tuple
    np.testing.assert_allclose(out.numpy(), Powers()(ids, mask).numpy(), rtol=1e-6, atol=1e-6)


class Softmaxes(torch.nn.Module):
    def forward(self, input_ids, attention_mask):
        x = (input_ids.float() * 0.37).sin() * 30.0 - attention_mask.float()  # spread: exp under- and overflows
        scores = x.reshape(1, 2, 4, 16)
        return torch.softmax(scores, dim=-1) + torch.softmax(x.reshape(8, 16).T, dim=0).T.reshape(1, 2, 4, 16)


@pytest.mark.slow  # builds with TVM
def test_last_axis_softmax_becomes_the_kernel_and_matches_torch():
    import tvm
    from tvm import relax

    from core.tvm.target import host_target

    ids = torch.arange(0, 128).reshape(1, 128)
    mask = torch.ones(1, 128, dtype=torch.int64)
    mod = to_relax(export_model(Softmaxes(), {"input_ids": ids, "attention_mask": mask}))
    rewritten = fast_math_pass()(mod)
    kernels = [gv.name_hint for gv, _ in rewritten.functions_items() if gv.name_hint.startswith("softmax_")]
    assert kernels == ["softmax_8_16"]  # the last-axis softmax; the one over axis 0 stays TVM's
    executable = tvm.compile(rewritten, host_target(2))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(ids.numpy()), tvm.runtime.tensor(mask.numpy()))
    out = out if hasattr(out, "numpy") else out[0]
    np.testing.assert_allclose(out.numpy(), Softmaxes()(ids, mask).numpy(), rtol=1e-5, atol=1e-6)


class LayerNorms(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.norm = torch.nn.LayerNorm(32, eps=1e-12)
        self.odd = torch.nn.LayerNorm(8)  # 8 features: not a multiple of 16, stays TVM's
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-1, 1)

    def forward(self, input_ids, attention_mask):
        x = (input_ids.float() * 0.73).sin() * 5.0 + 100.0 * attention_mask.float()  # a large mean
        return self.norm(x.reshape(1, 4, 32)).reshape(1, 128) + self.odd(x.reshape(16, 8)).reshape(1, 128)


@pytest.mark.slow  # builds with TVM
def test_last_axis_layer_norm_becomes_the_kernel_and_matches_torch():
    import tvm
    from tvm import relax

    from core.tvm.target import host_target

    ids = torch.arange(0, 128).reshape(1, 128)
    mask = torch.ones(1, 128, dtype=torch.int64)
    model = LayerNorms().eval()
    mod = to_relax(export_model(model, {"input_ids": ids, "attention_mask": mask}))
    rewritten = fast_math_pass()(mod)
    kernels = [gv.name_hint for gv, _ in rewritten.functions_items() if gv.name_hint.startswith("layer_norm_")]
    assert kernels == ["layer_norm_4_32"]
    executable = tvm.compile(rewritten, host_target(2))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(ids.numpy()), tvm.runtime.tensor(mask.numpy()))
    out = out if hasattr(out, "numpy") else out[0]
    with torch.no_grad():
        np.testing.assert_allclose(out.numpy(), model(ids, mask).numpy(), rtol=1e-5, atol=2e-5)


class MaskedSoftmax(torch.nn.Module):
    """transformers' attention tail: the rows whose scores are all -inf (fully masked) become zeros."""

    def forward(self, input_ids, attention_mask):
        x = (input_ids.float() * 0.37).sin() * 30.0 - attention_mask.float()
        scores = x.reshape(1, 2, 4, 16)
        scores = scores.masked_fill((input_ids.reshape(1, 2, 4, 16) % 32 == 5), float("-inf"))  # some -inf
        scores = scores.masked_fill(torch.arange(4).reshape(1, 1, 4, 1) == 2, float("-inf"))  # row 2: all -inf
        probs = torch.softmax(scores, dim=-1)
        finite = torch.logical_not(scores == float("-inf")).any(dim=-1, keepdim=True)  # as transformers writes it
        return probs.masked_fill(torch.logical_not(finite), 0.0)


@pytest.mark.slow  # builds with TVM
def test_the_fully_masked_row_chain_folds_into_the_softmax_kernel():
    import tvm
    from tvm import relax

    from core.tvm.target import host_target

    ids = torch.arange(0, 128).reshape(1, 128)
    mask = torch.ones(1, 128, dtype=torch.int64)
    mod = to_relax(export_model(MaskedSoftmax(), {"input_ids": ids, "attention_mask": mask}))
    assert "R.logical_not" in mod.script() and "R.max(" in mod.script()
    rewritten = fast_math_pass()(mod)
    script = rewritten.script()
    assert "R.logical_not" not in script and "R.max(" not in script  # the chain is gone; the kernel zeroes the row
    executable = tvm.compile(rewritten, host_target(2))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(ids.numpy()), tvm.runtime.tensor(mask.numpy()))
    out = (out if hasattr(out, "numpy") else out[0]).numpy()
    expected = MaskedSoftmax()(ids, mask).numpy()
    assert np.all(out[0, :, 2, :] == 0.0) and not np.isnan(out).any()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
