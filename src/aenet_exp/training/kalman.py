"""``optimizer=ekf``: the extended Kalman filter on the network weights.

The weights ``w`` are the filter's state; each batch gives ``m`` scalar measurements ``z(w)`` whose
target is zero (each structure's energy error and the force errors of groups of atoms, weighted as
in the loss: :meth:`ForceSupervision.measurements`).
With ``H`` the ``(n_w, m)`` Jacobian ``∂z/∂w`` and the error covariance ``P`` kept in blocks (one per
species' network, or one per layer) that share the scalar normaliser:

    A = (λ·I_m + Σ_b H_bᵀ P_b H_b)⁻¹          (m, m)
    K_b = P_b H_b A                             (n_b, m)
    w_b ← w_b − K_b z
    P_b ← (P_b − K_b H_bᵀ P_b) / λ + q·I
    λ ← ν·λ + 1 − ν                             (forgetting, λ → 1)

This is the global EKF of neural-network-potential training with the covariance split into blocks,
as in ænet's ``ekf`` trainer and the layer-wise Kalman filters of the MLIP literature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class KalmanFilter(torch.optim.Optimizer):
    """Extended Kalman filter over ``blocks`` of parameters, each with its own ``(n_b, n_b)`` covariance.

    The update is computed in float64 whatever the weights' precision (a float32 covariance loses its
    positive definiteness within a few thousand updates, and the filter diverges).

    Args:
        blocks: the parameter lists sharing one covariance block (a species' network, or a layer).
        lambda0: initial forgetting factor λ (0 < λ ≤ 1; smaller forgets faster).
        nue: forgetting schedule ν: after each update ``λ ← ν·λ + 1 − ν``.
        p0: initial covariance diagonal (the prior variance of each weight, normalised units).
        process_noise: ``q`` added to the covariance diagonal after each update.
    """

    def __init__(self, blocks: Sequence[Sequence[torch.nn.Parameter]], lambda0: float = 0.98, nue: float = 0.9987,
                 p0: float = 1.0, process_noise: float = 0.0):
        groups = [{"params": list(block)} for block in blocks]
        super().__init__(groups, {"lambda": lambda0, "nue": nue, "p0": p0, "process_noise": process_noise})
        for group in self.param_groups:
            first = group["params"][0]
            n = sum(p.numel() for p in group["params"])
            self.state[first]["P"] = p0 * torch.eye(n, dtype=torch.float64, device=first.device)

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's, but the covariances stay float64 (torch casts optimizer state to the weights' dtype)."""
        super().load_state_dict(state_dict)
        index = 0
        for group in self.param_groups:
            first = group["params"][0]
            self.state[first]["P"] = state_dict["state"][index]["P"].to(device=first.device, dtype=torch.float64)
            index += len(group["params"])

    def _jacobians(self, measurements: torch.Tensor) -> list[torch.Tensor]:
        """Each block's ``(n_b, m)`` Jacobian of the ``(m,)`` measurements."""
        params = [p for group in self.param_groups for p in group["params"]]
        m = measurements.numel()
        identity = torch.eye(m, dtype=measurements.dtype, device=measurements.device)
        grads = torch.autograd.grad(measurements, params, grad_outputs=identity, is_grads_batched=True,
                                    materialize_grads=True)  # each (m, *p.shape)
        rows = [g.reshape(m, -1) for g in grads]
        jacobians, start = [], 0
        for group in self.param_groups:
            stop = start + len(group["params"])
            jacobians.append(torch.cat(rows[start:stop], dim=1).T.double())
            start = stop
        return jacobians

    @torch.no_grad()
    def step(self, closure) -> torch.Tensor:
        """One Kalman update; ``closure()`` returns the batch's ``(m,)`` measurements (target zero) with their graph."""
        with torch.enable_grad():
            measurements = closure()
            if measurements.numel() == 0:  # nothing weighted to measure in this batch (α = 1, no forces in it)
                return measurements
            jacobians = self._jacobians(measurements)
        values = measurements.detach().double()
        lam = self.param_groups[0]["lambda"]
        covariances = [self.state[group["params"][0]]["P"] for group in self.param_groups]
        projected = [P @ H for P, H in zip(covariances, jacobians)]  # P_b H_b
        system = lam * torch.eye(len(values), dtype=values.dtype, device=values.device)
        system = system + sum(H.T @ PH for H, PH in zip(jacobians, projected))
        for group, P, PH in zip(self.param_groups, covariances, projected):
            gain = torch.linalg.solve(system, PH.T).T  # P_b H_b A, the system being symmetric
            step = gain @ values
            start = 0
            for p in group["params"]:
                p.sub_(step[start:start + p.numel()].view_as(p).to(p.dtype))
                start += p.numel()
            P.sub_(gain @ PH.T).div_(lam)
            P.copy_((P + P.T) / 2)  # kept symmetric against rounding
            P.diagonal().add_(group["process_noise"])
        for group in self.param_groups:
            group["lambda"] = lam + (1 - group["nue"]) * (1 - lam)  # = ν·λ + 1 − ν
        return measurements.detach()
