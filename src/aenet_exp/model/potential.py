"""The potential: descriptor -> standardised features -> per-species networks -> energies in eV."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from aenet_exp.descriptor import AtomGraph, ChebyshevDescriptor
from aenet_exp.errors import UnreadableFile, first_line
from aenet_exp.files import load_tensors, save_tensors
from aenet_exp.model.calibration import BUFFER as CALIBRATION_BUFFER
from aenet_exp.model.calibration import Calibration
from aenet_exp.model.networks import SpeciesNetworks
from aenet_exp.rundir import MODEL_FILE

__all__ = ["MODEL_FILE", "Potential"]


class Potential(nn.Module):
    """An ænet-style potential, or a committee of ``members`` of them sharing one descriptor.

    The total energy of a structure is ``Σ_i [scale · net_{s_i}(f̂_i) + shift + E_atomic[s_i]]`` (eV),
    with ``f̂ = (f − mean) / std`` the standardised features. ``mean``, ``std``, ``shift``
    (eV/atom), ``scale`` and ``E_atomic`` (eV, zero when training on total energies) are
    buffers fitted on the training split and saved with the weights.

    A committee's members differ only in their networks' weights; each predicts its own energies
    (leading axis ``members`` of :meth:`atom_energies` and :meth:`normalized_energy`), and :meth:`forward`
    gives their mean. :attr:`calibration` holds the factors of the members' standard deviation of energies and of
    forces (1 until calibrated), saved as the buffer ``sigma_scale`` ``(2,)``.
    """

    def __init__(
        self,
        descriptor: ChebyshevDescriptor,
        hidden: Mapping[str, Sequence[int]],
        activations: Mapping[str, Sequence[str]],
        members: int = 1,
        seeds: Sequence[int] | None = None,
    ):
        super().__init__()
        self.descriptor = descriptor
        self.architecture = {
            "hidden": {s: [int(n) for n in hidden[s]] for s in descriptor.species},
            "activations": {s: [str(a) for a in activations[s]] for s in descriptor.species},
        }
        self.networks = SpeciesNetworks(descriptor.species, descriptor.n_features, hidden, activations, members, seeds)
        n_features, n_species = descriptor.n_features, len(descriptor.species)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("energy_shift", torch.zeros(()))
        self.register_buffer("energy_scale", torch.ones(()))
        self.register_buffer("atomic_energies", torch.zeros(n_species))
        self.register_buffer(CALIBRATION_BUFFER, torch.ones(2))
        self._register_load_state_dict_pre_hook(uncalibrated_if_absent)
        self.to(descriptor.dtype)

    @property
    def members(self) -> int:
        """Committee members (1: a single potential)."""
        return self.networks.members

    def astype(self, dtype: torch.dtype) -> "Potential":
        """This potential with descriptor, weights and buffers in ``dtype`` (in place)."""
        self.descriptor.dtype = dtype
        return self.to(dtype)

    @property
    def calibration(self) -> Calibration:
        """The factors of the committee's σ (:class:`Calibration`)."""
        return Calibration.read(self.get_buffer(CALIBRATION_BUFFER))

    @calibration.setter
    def calibration(self, value: Calibration) -> None:
        value.write(self.get_buffer(CALIBRATION_BUFFER))

    @property
    def species(self) -> list[str]:
        return self.descriptor.species

    def set_normalization(
        self,
        feature_mean: torch.Tensor | None = None,
        feature_std: torch.Tensor | None = None,
        energy_shift: float | None = None,
        energy_scale: float | None = None,
        atomic_energies: Mapping[str, float] | None = None,
    ) -> None:
        """Set any of the normalisation buffers (features, eV/atom shift, scale, per-species eV)."""
        with torch.no_grad():
            if feature_mean is not None:
                self.feature_mean.copy_(torch.as_tensor(feature_mean))
            if feature_std is not None:
                self.feature_std.copy_(torch.as_tensor(feature_std))
            if energy_shift is not None:
                self.energy_shift.fill_(float(energy_shift))
            if energy_scale is not None:
                self.energy_scale.fill_(float(energy_scale))
            if atomic_energies is not None:
                values = [float(atomic_energies[s]) for s in self.species]
                self.atomic_energies.copy_(torch.tensor(values, dtype=torch.float64))

    def member_features(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features ``(n_atoms, n_features)`` as every member's input ``(members, n_atoms, n_features)`` (a
        view: each member's slice is where its own energy's feature gradient arrives)."""
        return features.unsqueeze(0).expand(self.members, -1, -1)

    def atomic_outputs(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Each member's normalised network outputs ``(members, n_atoms)`` from raw features ``(n_atoms,
        n_features)`` or per member ``(members, n_atoms, n_features)``."""
        if features.dim() == 2:
            features = self.member_features(features)
        return self.networks((features - self.feature_mean) / self.feature_std, species)

    def normalized_energy(
        self, features: torch.Tensor, species: torch.Tensor, structure: torch.Tensor, n_structures: int
    ) -> torch.Tensor:
        """``Σ_i net(f̂_i)`` per member and structure ``(members, n_structures)``: energy in normalised units, before scale,
        shift and atomic references (training compares it with normalised targets, free of the
        cancellation between large total energies that float32 cannot resolve)."""
        outputs = self.atomic_outputs(features, species)
        return outputs.new_zeros(outputs.shape[0], n_structures).index_add_(1, structure, outputs)

    def atom_energies(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Each member's per-atom energies ``(members, n_atoms)`` in eV: ``scale · net(f̂) + shift + E_atomic``."""
        atomic = self.energy_scale * self.atomic_outputs(features, species) + self.energy_shift
        return atomic + self.atomic_energies[species]

    def forward(self, graph: AtomGraph) -> torch.Tensor:
        """Total energies ``(n_structures,)`` in eV of a batch graph (the members' mean)."""
        atomic = self.atom_energies(self.descriptor(graph), graph.species).mean(0)
        return atomic.new_zeros(graph.n_structures).index_add_(0, graph.structure, atomic)

    def settings(self) -> dict:
        """Plain-data description of the architecture (rebuilds an untrained copy)."""
        return {
            "descriptor": self.descriptor.settings(), **self.architecture, "members": self.members,
            "dtype": str(self.descriptor.dtype),
        }

    @classmethod
    def from_settings(cls, settings: Mapping) -> "Potential":
        dtype = getattr(torch, str(settings["dtype"]).removeprefix("torch."))
        descriptor = ChebyshevDescriptor(**settings["descriptor"], dtype=dtype)
        return cls(descriptor, settings["hidden"], settings["activations"], members=int(settings.get("members", 1)))

    def member(self, k: int) -> "Potential":
        """Member ``k`` of this committee as a single potential (a copy, with the shared normalisation)."""
        single = Potential.from_settings({**self.settings(), "members": 1})
        state = {
            name: value[k : k + 1] if name.startswith("networks.") else value for name, value in self.state_dict().items()
        }
        single.load_state_dict(state)
        return single.to(self.feature_mean.device)

    def save(self, path: str | Path, weights: Mapping[str, torch.Tensor] | None = None) -> None:
        """Write settings and weights (tensors and plain data only; ``weights`` instead of the current ones when
        given, a state dict of this potential) atomically to ``path``."""
        payload = {"settings": self.settings(), "state_dict": dict(weights) if weights is not None else self.state_dict()}
        save_tensors(path, payload)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "Potential":
        """Read a model written by :meth:`save` (``weights_only=True``: no code runs from the file)."""
        payload = load_tensors(path, "an aenet_exp model")
        try:
            model = cls.from_settings(payload["settings"])
            model.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise UnreadableFile(f"{path}: not an aenet_exp model ({first_line(error)})") from None
        return model.to(map_location)


def uncalibrated_if_absent(state: dict, prefix: str, *args) -> None:
    """Load hook: models saved before committees have no calibration buffer (``sigma_scale``); theirs is 1."""
    key = prefix + CALIBRATION_BUFFER
    if prefix + "energy_scale" in state and key not in state:
        state[key] = torch.ones(2, dtype=state[prefix + "energy_scale"].dtype)
