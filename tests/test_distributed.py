"""Issue #14: data-parallel SVGP-VAE on torch.distributed (2 processes, gloo, CPU) equals one process."""

import os

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gpytorch_vae import GECO, GPVAE, distributed
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.objectives import ELBO, GECOObjective, ScaledLossOptimizer
from gpytorch_vae.priors import IndependentLatentPrior, SparseLatentPrior
from reference import geco_step_by_hand, make_sparse_gp

DT = torch.float64
B, N, K = 12, 60, 3  # union batch, data set size, observation dimension


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(K, 4)

    def forward(self, y):
        mean, log_var = self.net(y).chunk(2, dim=-1)
        return mean, log_var - 1.0


def make_vae(prior="sparse", reducer=None):
    torch.manual_seed(0)
    gp = make_sparse_gp(torch.linspace(0, 6, 5, dtype=DT).unsqueeze(-1), jitter_val=1e-8, statistics_reducer=reducer)
    decoder = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, K))
    latent_prior = SparseLatentPrior(gp) if prior == "sparse" else IndependentLatentPrior()
    return GPVAE(Encoder(), decoder, latent_prior, 2, likelihood=GaussianLikelihood(), gp_dtype=DT).double()


def data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(B, 1, generator=g, dtype=DT) * 6, torch.randn(B, K, generator=g, dtype=DT)


def on_ranks(objective, ranks):
    """The objective as training runs it: through DDP on several ranks."""
    return objective if ranks is None else distributed.data_parallel(objective)


def step_results(vae, x, y, ranks=None):
    """Loss value, q(v) and gradients of one ELBO step (on several ranks: this rank's shard, through DDP)."""
    pyro.set_rng_seed(5)
    objective = on_ranks(ELBO(vae, N, ranks=ranks), ranks)  # kept alive until after the backward pass (DDP's hooks)
    terms = objective(x, y)
    terms.loss.backward()
    grads = {name: p.grad.clone() for name, p in vae.named_parameters() if p.grad is not None}
    result = {"loss": terms.value.detach(), "grads": grads}
    if isinstance(vae.latent_prior, SparseLatentPrior):
        mean, var = vae.latent_dataset(y, x)
        q_v = vae.latent_prior.condition(x, mean, var, N).posterior.whitened_posterior
        result.update(loc=q_v.loc.detach(), scale_tril=q_v.scale_tril.detach())
    return result


def geco_results(vae, x, y, ranks=None):
    """Parameters after three GECO steps as fit takes them."""
    pyro.set_rng_seed(7)
    objective = GECOObjective(vae, N, GECO(kappa2=0.0), ranks=ranks)
    optimizer = ScaledLossOptimizer(torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=1e-2))
    forward, logs = on_ranks(objective, ranks), []
    for _ in range(3):
        logs.append(geco_step_by_hand(forward, objective.geco, optimizer, x, y).logs())
    return {"params": {k: v.detach().clone() for k, v in vae.state_dict().items()}, "logs": logs,
            "lambda": objective.geco.log_lagrange_multiplier.clone()}  # fmt: skip


def streamed_prediction(vae, batches, x_new):
    with torch.no_grad():
        posterior = vae.latent_prior.condition_on_batches((x, *vae.latent_dataset(y, x)) for x, y in batches)
        q = posterior.predict(x_new)
    return q.mean, q.variance


def worker(rank, world, init_file, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    x, y = data()
    part = slice(rank * B // world, (rank + 1) * B // world)  # rank r holds the r-th slice of the union batch
    ranks = distributed.Ranks()
    vae = make_vae(reducer=distributed.StatisticsAllReduce())
    results = {"step": step_results(vae, x[part], y[part], ranks)}
    vae = make_vae("independent")
    results["independent"] = step_results(vae, x[part], y[part], ranks)
    vae = make_vae(reducer=distributed.StatisticsAllReduce())
    results["geco"] = geco_results(vae, x[part], y[part], ranks)
    x_new = torch.linspace(-1, 7, 4, dtype=DT).unsqueeze(-1)
    mine = [(x[i : i + 2], y[i : i + 2]) for i in range(part.start, part.stop, 2)]  # this rank's share, streamed
    results["stream"] = streamed_prediction(vae, mine, x_new)
    vae.eval()  # in eval mode each process conditions on its own data: no collective (rank 0 alone would hang)
    results["eval_stream"] = streamed_prediction(vae, mine, x_new)
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(worker, args=(2, str(out / "store"), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_one_step_on_two_ranks_equals_one_process(two_ranks):
    x, y = data()
    vae = make_vae()
    single = step_results(vae, x, y)
    for result in two_ranks:
        torch.testing.assert_close(result["step"]["loss"], single["loss"], rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(result["step"]["loc"], single["loc"], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(result["step"]["scale_tril"], single["scale_tril"], rtol=1e-12, atol=1e-12)
        assert result["step"]["grads"].keys() == single["grads"].keys()
        for name, grad in single["grads"].items():
            torch.testing.assert_close(result["step"]["grads"][name], grad, rtol=1e-9, atol=1e-11, msg=name)


def test_a_prior_without_shared_terms_on_two_ranks_equals_one_process(two_ranks):
    """Each rank draws its slice of the union batch's noise: no two ranks share noise, as one process."""
    x, y = data()
    vae = make_vae("independent")
    single = step_results(vae, x, y)
    for result in two_ranks:
        torch.testing.assert_close(result["independent"]["loss"], single["loss"], rtol=1e-12, atol=1e-10)
        for name, grad in single["grads"].items():
            torch.testing.assert_close(result["independent"]["grads"][name], grad, rtol=1e-9, atol=1e-11, msg=name)


def test_geco_training_on_two_ranks_equals_one_process(two_ranks):
    x, y = data()
    single = geco_results(make_vae(), x, y)
    for result in two_ranks:
        torch.testing.assert_close(result["geco"]["lambda"], single["lambda"], rtol=1e-12, atol=1e-12)
        for name, value in single["params"].items():
            torch.testing.assert_close(result["geco"]["params"][name], value, rtol=1e-9, atol=1e-10, msg=name)
        for mine, theirs in zip(result["geco"]["logs"], single["logs"]):
            assert mine["mse"] == pytest.approx(theirs["mse"], rel=1e-10)


def test_streaming_conditioning_split_over_ranks_equals_one_process(two_ranks):
    x, y = data()
    vae = make_vae()
    geco_results(vae, x, y)  # the same parameters as the ranks' after their GECO steps
    x_new = torch.linspace(-1, 7, 4, dtype=DT).unsqueeze(-1)
    mean, variance = streamed_prediction(vae, [(x, y)], x_new)
    for result in two_ranks:
        torch.testing.assert_close(result["stream"][0], mean, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(result["stream"][1], variance, rtol=1e-9, atol=1e-10)


def test_eval_mode_conditions_each_rank_on_its_own_share(two_ranks):
    """In eval mode the statistics reducer is not used: each rank's streaming conditioning is that of its own share
    (and a rank evaluating alone cannot hang on a collective)."""
    x, y = data()
    vae = make_vae()
    geco_results(vae, x, y)
    x_new = torch.linspace(-1, 7, 4, dtype=DT).unsqueeze(-1)
    for rank, result in enumerate(two_ranks):
        part = slice(rank * B // 2, (rank + 1) * B // 2)
        mean, _ = streamed_prediction(vae, [(x[part], y[part])], x_new)
        torch.testing.assert_close(result["eval_stream"][0], mean, rtol=1e-9, atol=1e-10)
    assert not torch.allclose(two_ranks[0]["eval_stream"][0], two_ranks[1]["eval_stream"][0])
