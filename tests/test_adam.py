"""The training loop's Adam against torch.optim.Adam: the same steps, and states that either takes up."""

import torch

from spikeglm.inference.adam import Adam


def _pair(dtype: torch.dtype) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    generator = torch.Generator().manual_seed(0)
    values = [
        torch.randn(3, 4, generator=generator, dtype=dtype),
        torch.randn(5, generator=generator, dtype=dtype),
    ]
    return [torch.nn.Parameter(v.clone()) for v in values], [torch.nn.Parameter(v.clone()) for v in values]


def _steps(optimizers, groups, n_steps: int, seed: int) -> None:
    """The same gradients to both parameter lists; the second parameter has none every third step, and
    the learning rate is lowered half way."""
    generator = torch.Generator().manual_seed(seed)
    for step in range(n_steps):
        gradients = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in groups[0]]
        for optimizer, params in zip(optimizers, groups, strict=True):
            optimizer.zero_grad()
            for number, (parameter, gradient) in enumerate(zip(params, gradients, strict=True)):
                if not (number == 1 and step % 3 == 0):
                    parameter.grad = gradient.clone()
            if step == n_steps // 2:
                optimizer.param_groups[0]["lr"] = 0.01
            optimizer.step()


def test_the_steps_are_torchs_adam_steps():
    """40 steps of random gradients, a parameter left without one every third step, the rate lowered
    half way: the parameters agree with torch.optim.Adam's to float64 rounding (1e-12)."""
    ours, theirs = _pair(torch.float64)
    optimizers = (Adam(ours, lr=0.05), torch.optim.Adam(theirs, lr=0.05))
    _steps(optimizers, (ours, theirs), 40, seed=1)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert float(optimizers[0].state[1]["step"]) == float(optimizers[1].state[theirs[1]]["step"]) == 26


def test_a_state_saved_by_torchs_adam_resumes_alike():
    """The checkpoints of earlier releases hold torch.optim.Adam's state: taken up here, 20 steps on, the
    parameters agree with torch's own continuation (1e-12); this Adam's state keeps torch's keys and
    numbering, and is taken up by another of its kind."""
    ours, theirs = _pair(torch.float64)
    torch_adam = torch.optim.Adam(theirs, lr=0.05)
    _steps((torch_adam,), (theirs,), 10, seed=2)
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b)
    resumed = Adam(ours, lr=0.5)
    resumed.load_state_dict(torch_adam.state_dict())
    assert resumed.param_groups[0]["lr"] == 0.01  # lowered half way
    _steps((resumed, torch_adam), (ours, theirs), 20, seed=3)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    state = resumed.state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and state["param_groups"][0][
        "params"
    ] == [0, 1]
    again = Adam([torch.nn.Parameter(p.detach().clone()) for p in ours], lr=0.5)
    again.load_state_dict(state)
    assert again.state_dict()["param_groups"] == state["param_groups"]
    torch.testing.assert_close(again.state[1]["exp_avg_sq"], resumed.state[1]["exp_avg_sq"], rtol=0, atol=0)
