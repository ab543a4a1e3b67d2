"""The original S-curve DDPM code, transcribed as the independent oracle for exactness tests.

Kept as the original wrote it (global RNG, in-place add, DataLoader with shuffle=True),
apart from taking its tables as arguments instead of module globals.
"""
import torch
import torch.nn as nn


def original_schedule(num_steps=100):
    betas = torch.linspace(-6, 6, num_steps)
    betas = torch.sigmoid(betas) * (0.5e-2 - 1e-5) + 1e-5
    alphas = 1 - betas
    alphas_prod = torch.cumprod(alphas, 0)
    alphas_prod_p = torch.cat([torch.tensor([1]).float(), alphas_prod[:-1]], 0)
    alphas_bar_sqrt = torch.sqrt(alphas_prod)
    one_minus_alphas_bar_log = torch.log(1 - alphas_prod)
    one_minus_alphas_bar_sqrt = torch.sqrt(1 - alphas_prod)
    return dict(betas=betas, alphas=alphas, alphas_prod=alphas_prod, alphas_prod_p=alphas_prod_p,
                alphas_bar_sqrt=alphas_bar_sqrt, one_minus_alphas_bar_log=one_minus_alphas_bar_log,
                one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt)


class OriginalMLPDiffusion(nn.Module):
    def __init__(self, n_steps, num_units=128):
        super(OriginalMLPDiffusion, self).__init__()
        self.linears = nn.ModuleList([
            nn.Linear(2, num_units), nn.ReLU(),
            nn.Linear(num_units, num_units), nn.ReLU(),
            nn.Linear(num_units, num_units), nn.ReLU(),
            nn.Linear(num_units, 2), ])
        self.step_embeddings = nn.ModuleList([
            nn.Embedding(n_steps, num_units),
            nn.Embedding(n_steps, num_units),
            nn.Embedding(n_steps, num_units), ])

    def forward(self, x, t):
        for idx, embedding_layer in enumerate(self.step_embeddings):
            t_embedding = embedding_layer(t)
            x = self.linears[2 * idx](x)
            x += t_embedding
            x = self.linears[2 * idx + 1](x)
        x = self.linears[-1](x)
        return x


def diffusion_loss_fn(model, x_0, alphas_bar_sqrt, one_minus_alphas_bar_sqrt, n_steps):
    batch_size = x_0.shape[0]
    t = torch.randint(0, n_steps, size=(batch_size // 2,))
    t = torch.cat([t, n_steps - 1 - t], dim=0)
    t = t.unsqueeze(-1)
    a = alphas_bar_sqrt[t]
    aml = one_minus_alphas_bar_sqrt[t]
    e = torch.randn_like(x_0)
    x = x_0 * a + e * aml
    output = model(x, t.squeeze(-1))
    return (e - output).square().mean()


def p_sample_loop(model, shape, n_steps, betas, one_minus_alphas_bar_sqrt):
    cur_x = torch.randn(shape)
    x_seq = [cur_x]
    for i in reversed(range(n_steps)):
        cur_x = p_sample(model, cur_x, i, betas, one_minus_alphas_bar_sqrt)
        x_seq.append(cur_x)
    return x_seq


def p_sample(model, x, t, betas, one_minus_alphas_bar_sqrt):
    t = torch.tensor([t])
    coeff = betas[t] / one_minus_alphas_bar_sqrt[t]
    eps_theta = model(x, t)
    mean = (1 / (1 - betas[t]).sqrt()) * (x - (coeff * eps_theta))
    z = torch.randn_like(x)
    sigma_t = betas[t].sqrt()
    sample = mean + sigma_t * z
    return sample


def original_training(dataset, num_steps, num_epoch, batch_size=128, snapshot_every=100):
    """The original training loop (its plotting replaced by keeping the sampled trajectory)."""
    tables = original_schedule(num_steps)
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    model = OriginalMLPDiffusion(num_steps)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    snapshots = {}
    for t in range(num_epoch):
        for _idx, batch_x in enumerate(dataloader):
            loss = diffusion_loss_fn(model, batch_x, tables["alphas_bar_sqrt"],
                                     tables["one_minus_alphas_bar_sqrt"], num_steps)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.)
            optimizer.step()
        if t % snapshot_every == 0:
            x_seq = p_sample_loop(model, dataset.shape, num_steps, tables["betas"],
                                  tables["one_minus_alphas_bar_sqrt"])
            snapshots[t] = torch.stack(x_seq[10::10])
    return model, snapshots
