"""Exact (Bayes-optimal) models of distributions known in closed form, for checking samplers.

A sampler that is handed the exact optimal model of a known distribution must reproduce that
distribution up to its discretisation error; these classes are those models.

Gaussian mixture under the VP forward process ``x_t = alpha x_0 + sigma eps``: with
``x_0 ~ sum_k pi_k N(mu_k, Sigma_k)``, the marginal is ``x_t ~ sum_k pi_k N(alpha mu_k, C_k)``,
``C_k = alpha^2 Sigma_k + sigma^2 I``, and the optimal denoiser (Tweedie's formula, Efron 2011;
equivalently the score ``grad log p_t``) is

    r_k(x_t)      = pi_k N(x_t; alpha mu_k, C_k) / sum_j pi_j N(x_t; alpha mu_j, C_j)
    E[x_0 | x_t]  = sum_k r_k (mu_k + alpha Sigma_k C_k^{-1} (x_t - alpha mu_k))
    eps_hat(x_t)  = -sigma grad log p_t(x_t) = (x_t - alpha E[x_0 | x_t]) / sigma
                  = sigma sum_k r_k C_k^{-1} (x_t - alpha mu_k)

at every timestep (the epsilon-prediction minimiser of the DDPM loss). Computed in float64.

Markov chain over tokens (for masked discrete diffusion): the exact conditional of every variable
given the visible ones is the leave-one-out posterior of an HMM whose emissions are the indicator
of the visible value (forward-backward, Rabiner 1989, eq. 18-27).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from stemforge.samplers.objectives import Prediction, prediction_from
from stemforge.samplers.schedules import NoiseSchedule


def _terms(schedule: NoiseSchedule, t: Tensor) -> tuple[Tensor, Tensor]:
    t = t.detach().to("cpu", torch.float64)
    return schedule.alpha(t), schedule.sigma(t)


class GaussianMixtureDenoiser:
    """The optimal ``model(x_t, t, cond)`` for a Gaussian mixture over ``x`` of shape (B, *event).

    ``means`` (K, d), ``covariances`` (K, d, d), ``weights`` (K,) with ``d = prod(event)``. Optional
    ``cond`` keys: ``"component"`` (B,) long restricts a row to one component (the conditional
    model), ``"drop"`` (B,) bool makes those rows unconditional (the CFG null branch).
    """

    def __init__(
        self,
        means: Tensor,
        covariances: Tensor,
        weights: Tensor,
        schedule: NoiseSchedule,
        prediction: Prediction = "epsilon",
    ) -> None:
        self.means = means.double()
        self.covariances = covariances.double()
        self.weights = weights.double() / weights.double().sum()
        self.schedule = schedule
        self.prediction = prediction
        k, d = self.means.shape
        if self.covariances.shape != (k, d, d) or self.weights.shape != (k,):
            raise ValueError("means (K, d), covariances (K, d, d) and weights (K,) disagree in K or d")

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(
        self, n: int, generator: torch.Generator | None = None, component: Tensor | None = None
    ) -> Tensor:
        """``n`` exact float64 samples (n, d) of the mixture (or of the given components)."""
        if component is None:
            component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covariances)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[component] + torch.einsum("nij,nj->ni", chol[component], z)

    def posterior_mean(self, x_t: Tensor, t: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        """``E[x_0 | x_t]`` (B, d) in float64."""
        batch = x_t.shape[0]
        x = x_t.detach().reshape(batch, -1).to("cpu", torch.float64)
        alpha, sigma = _terms(self.schedule, t)
        eye = torch.eye(self.dim, dtype=torch.float64)
        solved = torch.empty(batch, *self.means.shape, dtype=torch.float64)
        log_det = torch.empty(batch, self.means.shape[0], dtype=torch.float64)
        # a sampler calls with one timestep for the whole batch: factor each (K, d, d) set once
        t_cpu = t.detach().cpu()
        levels = [t_cpu[0]] if bool((t_cpu == t_cpu[0]).all()) else list(torch.unique(t_cpu))
        for level in levels:
            rows = t_cpu == level
            a_l, s_l = alpha[rows][0], sigma[rows][0]
            cov_t = a_l**2 * self.covariances + s_l**2 * eye  # (K, d, d)
            chol = torch.linalg.cholesky(cov_t)
            resid = x[rows, None, :] - a_l * self.means[None]  # (b, K, d)
            solved[rows] = torch.einsum("kij,bkj->bki", torch.cholesky_inverse(chol), resid)
            log_det[rows] = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        resid = x[:, None, :] - alpha[:, None, None] * self.means[None]
        a = alpha[:, None, None, None]
        log_lik = -0.5 * ((resid * solved).sum(-1) + log_det + self.dim * math.log(2 * math.pi))
        log_w = self.weights.log()[None].expand(batch, -1).clone()
        if cond is not None and "component" in cond:
            chosen = torch.full_like(log_w, -math.inf)
            comp = cond["component"].detach().cpu().long()
            chosen[torch.arange(batch), comp] = log_w[torch.arange(batch), comp]
            if "drop" in cond:
                keep = ~cond["drop"].detach().cpu().bool()
                log_w[keep] = chosen[keep]
            else:
                log_w = chosen
        resp = torch.softmax(log_w + log_lik, dim=1)
        mean_k = self.means[None] + a[..., 0] * torch.einsum("kij,bkj->bki", self.covariances, solved)
        return (resp[..., None] * mean_k).sum(1)

    def __call__(self, x_t: Tensor, t: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        x0 = self.posterior_mean(x_t, t, cond)
        x = x_t.detach().reshape(x_t.shape[0], -1).to("cpu", torch.float64)
        alpha, sigma = _terms(self.schedule, t)
        eps = (x - alpha[:, None] * x0) / sigma[:, None]
        out = prediction_from(x0, eps, alpha[:, None], sigma[:, None], self.prediction)
        return out.reshape(x_t.shape).to(x_t.device, x_t.dtype)


class DiagonalGaussianDenoiser:
    """The optimal model for independent Gaussian elements ``x_0 ~ N(mean, variance)`` of any shape.

    ``mean`` and ``variance`` have the event shape (for latents: (S, C, T, F), independent stems).
    ``cond`` is ignored. ``E[x_0 | x_t] = mean + alpha var / (alpha^2 var + sigma^2) (x_t - alpha mean)``.
    """

    def __init__(
        self, mean: Tensor, variance: Tensor, schedule: NoiseSchedule, prediction: Prediction = "epsilon"
    ) -> None:
        self.mean = mean.double()
        self.variance = variance.double()
        self.schedule = schedule
        self.prediction = prediction

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn((n, *self.mean.shape), generator=generator, dtype=torch.float64)
        return self.mean + self.variance.sqrt() * z

    def __call__(self, x_t: Tensor, t: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        x = x_t.detach().to("cpu", torch.float64)
        alpha, sigma = _terms(self.schedule, t)
        shape = (-1, *([1] * self.mean.ndim))
        a, s = alpha.reshape(shape), sigma.reshape(shape)
        x0 = self.mean + a * self.variance / (a**2 * self.variance + s**2) * (x - a * self.mean)
        eps = (x - a * x0) / s
        return prediction_from(x0, eps, a, s, self.prediction).to(x_t.device, x_t.dtype)


class MarkovChainOracle:
    """The exact masked-discrete model of first-order Markov chains along the last axis.

    ``initial`` (K,) and ``transition`` (K, K) (rows sum to one). Called as
    ``model(x, visible, cond)`` with ``x`` (B, ..., T) tokens and ``visible`` (B, ..., T) bool; every
    leading position is an independent chain (e.g. voices). Returns, for every variable, the
    logits of its conditional given all the other visible variables: (B, ..., T, K) for
    ``kind="categorical"``, (B, ..., T) (``log p(1) - log p(0)``, K = 2) for ``kind="bernoulli"``.
    """

    def __init__(
        self, initial: Tensor, transition: Tensor, kind: Literal["categorical", "bernoulli"] = "categorical"
    ) -> None:
        self.initial = initial.double() / initial.double().sum()
        self.transition = transition.double() / transition.double().sum(-1, keepdim=True)
        self.kind = kind
        if kind == "bernoulli" and self.initial.shape[0] != 2:
            raise ValueError("a Bernoulli chain has K = 2 states")

    @property
    def num_classes(self) -> int:
        return int(self.initial.shape[0])

    def stationary(self) -> Tensor:
        evals, evecs = torch.linalg.eig(self.transition.T)
        vec = evecs[:, torch.argmin((evals - 1).abs())].real
        return vec / vec.sum()

    def entropy_rate(self) -> float:
        """``-sum_i pi_i sum_j P_ij log P_ij`` in nats (pi the stationary distribution)."""
        p = self.transition
        plogp = torch.where(p > 0, p * p.clamp(min=1e-300).log(), torch.zeros_like(p))
        return float(-(self.stationary() * plogp.sum(-1)).sum())

    def entropy(self, length: int) -> float:
        """Exact entropy in nats of a chain of ``length`` steps started from ``initial``."""
        total = float(-(self.initial * self.initial.clamp(min=1e-300).log()).sum())
        marginal = self.initial
        p = self.transition
        row_entropy = -torch.where(p > 0, p * p.clamp(min=1e-300).log(), torch.zeros_like(p)).sum(-1)
        for _ in range(length - 1):
            total += float((marginal * row_entropy).sum())
            marginal = marginal @ p
        return total

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """Exact samples (..., T) as long tokens (float {0, 1} for Bernoulli)."""
        *lead, length = shape
        m = math.prod(lead)
        states = torch.empty(m, length, dtype=torch.long)
        states[:, 0] = torch.multinomial(self.initial, m, replacement=True, generator=generator)
        for i in range(1, length):
            states[:, i] = torch.multinomial(self.transition[states[:, i - 1]], 1, generator=generator)[:, 0]
        out = states.reshape(shape)
        return out.float() if self.kind == "bernoulli" else out

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p(x)`` summed over every chain of a row: (B,)."""
        states = x.long().reshape(x.shape[0], -1, x.shape[-1])
        lp = self.initial.clamp(min=1e-300).log()[states[..., 0]]
        lp = lp + self.transition.clamp(min=1e-300).log()[states[..., :-1], states[..., 1:]].sum(-1)
        return lp.sum(-1)

    def __call__(self, x: Tensor, visible: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        shape = x.shape
        length, k = shape[-1], self.num_classes
        states = x.detach().cpu().long().reshape(-1, length).clamp(0, k - 1)
        vis = visible.detach().cpu().bool().reshape(-1, length)
        evidence = torch.where(
            vis[..., None],
            torch.nn.functional.one_hot(states, k).double(),
            torch.ones(1, dtype=torch.float64),
        )
        p = self.transition
        predicted = torch.empty(states.shape[0], length, k, dtype=torch.float64)
        backward = torch.empty_like(predicted)
        msg = self.initial.expand(states.shape[0], k)
        for i in range(length):
            predicted[:, i] = msg
            filtered = msg * evidence[:, i]
            msg = (filtered / filtered.sum(-1, keepdim=True).clamp(min=1e-300)) @ p
        msg = torch.ones(states.shape[0], k, dtype=torch.float64)
        for i in range(length - 1, -1, -1):
            backward[:, i] = msg
            weighted = (evidence[:, i] * msg) @ p.T
            msg = weighted / weighted.sum(-1, keepdim=True).clamp(min=1e-300)
        post = predicted * backward
        post = post / post.sum(-1, keepdim=True)
        log_post = post.clamp(min=1e-30).log()
        if self.kind == "bernoulli":
            return (log_post[..., 1] - log_post[..., 0]).reshape(shape).float().to(x.device)
        return log_post.reshape(*shape, k).float().to(x.device)
