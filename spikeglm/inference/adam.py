"""Adam, the training loop's optimizer, written out.

``torch.optim``'s optimizers import ``torch._dynamo`` when the first of them is made: about 1.3 s of CPU
once per process, as much as the whole stochastic phase of some fits (a fit with latent factors and no
hidden neuron of an hour's recording trains in about 3 s). This one makes the same updates as
``torch.optim.Adam`` with its defaults and keeps its state in the same form, so that the checkpoints of
earlier releases, written from ``torch.optim.Adam``, resume with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["Adam"]


class Adam:
    """Adam (Kingma & Ba 2015): ``torch.optim.Adam``'s update, without weight decay or AMSGrad.

    Each parameter with a gradient moves by ``-lr * m_hat / (sqrt(v_hat) + eps)``, the bias-corrected
    moving averages of its gradient and squared gradient; a parameter without a gradient (``grad`` None)
    is left as it is, its averages and step count too.

    Parameters
    ----------
    params : iterable of torch.Tensor
        The parameters updated, in the order of the state's numbering.
    lr : float
        The learning rate, ``param_groups[0]["lr"]`` (which may be changed between steps).
    betas : tuple of float
        The averages' decay rates.
    eps : float
        Added to the root of the squared gradients' average.

    Examples
    --------
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> optimizer = Adam([w], lr=0.1)
    >>> w.grad = torch.tensor([0.5, -3.0])
    >>> optimizer.step()  # a first step moves each parameter by lr against its gradient's sign
    >>> w.detach()
    tensor([ 0.9000, -1.9000])
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.param_groups: list[dict[str, Any]] = [
            {"params": self.params, "lr": lr, "betas": tuple(betas), "eps": eps}
        ]
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (``grad`` None: the only way here, whatever ``set_to_none``)."""
        for parameter in self.params:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Move every parameter that has a gradient one step."""
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for number, parameter in enumerate(self.params):
            gradient = parameter.grad
            if gradient is None:
                continue
            state = self.state.get(number)
            if state is None:
                state = self.state[number] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(parameter),
                    "exp_avg_sq": torch.zeros_like(parameter),
                }
            state["step"] += 1
            steps = float(state["step"])
            state["exp_avg"].lerp_(gradient, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            denominator = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**steps)).add_(eps)
            parameter.addcdiv_(state["exp_avg"], denominator, value=-lr / (1 - beta1**steps))

    def state_dict(self) -> dict:
        """The state in ``torch.optim.Adam.state_dict()``'s form: ``state`` by parameter number and
        ``param_groups`` numbering the parameters."""
        settings = {key: value for key, value in self.param_groups[0].items() if key != "params"}
        return {
            "state": {number: dict(values) for number, values in self.state.items()},
            "param_groups": [
                {**settings, "betas": list(settings["betas"]), "params": list(range(len(self.params)))}
            ],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Take up a state of :meth:`state_dict`'s form: this optimizer's, or ``torch.optim.Adam``'s."""
        (saved,) = state_dict["param_groups"]
        if saved["params"] != list(range(len(self.params))):
            raise ValueError(
                f"the state numbers {len(saved['params'])} parameters; this optimizer has {len(self.params)}"
            )
        group = self.param_groups[0]
        group.update(lr=saved["lr"], betas=tuple(saved["betas"]), eps=saved["eps"])
        self.state = {}
        for number, values in state_dict["state"].items():
            parameter = self.params[int(number)]
            self.state[int(number)] = {
                "step": torch.as_tensor(values["step"], dtype=torch.float32).clone(),
                "exp_avg": values["exp_avg"].to(parameter).clone(),
                "exp_avg_sq": values["exp_avg_sq"].to(parameter).clone(),
            }
