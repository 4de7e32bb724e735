# PyTorch anchor for `pocketgan-train bench --family seqgan`: the median time of one SeqGAN
# adversarial round with the same networks, batch and optimizers as pocketgan's reference setup.
# Usage: python3 scripts/anchors/torch_seqgan_step.py [THREADS] [ROLLOUTS] [D_STEPS]
#        (defaults 2, 16, 5; needs torch)
# As the authors' sequence_gan.py on the synthetic benchmark (vocabulary 5,000, length 20, batch 64):
# G an LSTM language model (embedding 32, hidden 32), D a CNN over token embeddings (pocketgan's
# filter widths and numbers, max over time, highway, dropout 0.25, two logits). One round: G samples
# a batch; each token's reward is the mean of D's "real" probability over ROLLOUTS completions of
# its prefix by the delayed copy of G (the whole sequence's own score for the last token); G takes
# one REINFORCE step (Adam 0.01, gradients clipped to norm 5 per parameter); the copy moves 20% of
# the way to G; D takes D_STEPS steps (Adam 1e-4) on real batches against fresh samples, with the
# L2 term on its output layer. The "real" batches are random tokens: a round's cost does not depend
# on their values, and the anchor then needs no oracle.
import copy
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import report  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
rollouts = int(sys.argv[2]) if len(sys.argv) > 2 else 16
d_steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
torch.set_num_threads(threads)
torch.manual_seed(0)
V, E, H, T, B, START = 5000, 32, 32, 20, 64, 0
FILTERS = [(1, 25), (2, 50), (3, 50), (4, 50), (5, 50), (6, 25), (7, 25), (8, 25), (9, 25),
           (10, 25), (15, 40), (20, 40)]


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, batch_first=True)
        self.out = nn.Linear(H, V)
        for p in self.parameters():
            nn.init.normal_(p, 0.0, 0.1)

    def log_probs(self, tokens):
        """Teacher-forced log G(y_t | y_<t), [N, T]."""
        start = torch.full((tokens.shape[0], 1), START, dtype=torch.long)
        y, _ = self.lstm(self.embedding(torch.cat([start, tokens[:, :-1]], 1)))
        return F.log_softmax(self.out(y), -1).gather(2, tokens.unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def complete(self, prefix):
        """Sequences of T tokens: `prefix` [N, t], then tokens drawn one by one."""
        n, t = prefix.shape
        x = torch.cat([torch.full((n, 1), START, dtype=torch.long), prefix], 1)
        y, state = self.lstm(self.embedding(x))
        out = [prefix]
        logits = self.out(y[:, -1])
        for _ in range(T - t):
            tok = torch.multinomial(F.softmax(logits, -1), 1)
            out.append(tok)
            y, state = self.lstm(self.embedding(tok), state)
            logits = self.out(y[:, -1])
        return torch.cat(out, 1)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.convs = nn.ModuleList([nn.Conv1d(E, n, w) for w, n in FILTERS])
        f = sum(n for _, n in FILTERS)
        self.highway, self.gate = nn.Linear(f, f), nn.Linear(f, f)
        self.drop = nn.Dropout(0.25)
        self.out = nn.Linear(f, 2)

    def forward(self, tokens):
        x = self.embedding(tokens).transpose(1, 2)
        x = torch.cat([F.relu(c(x)).amax(2) for c in self.convs], 1)
        t = torch.sigmoid(self.gate(x))
        return self.out(self.drop(t * F.relu(self.highway(x)) + (1 - t) * x))

    def l2(self):
        return (self.out.weight.pow(2).sum() + self.out.bias.pow(2).sum()) / 2


g, d = Generator(), Discriminator()
rollout = copy.deepcopy(g)
og = torch.optim.Adam(g.parameters(), 0.01, betas=(0.9, 0.999))
od = torch.optim.Adam(d.parameters(), 1e-4, betas=(0.9, 0.999))
real_data = torch.randint(0, V, (10_000, T))


def real_probability(seqs):
    with torch.no_grad():
        d.eval()
        p = F.softmax(d(seqs), -1)[:, 1]
        d.train()
        return p


def step():
    # G: REINFORCE with each token's reward from rollouts judged by D.
    samples = g.complete(torch.empty(B, 0, dtype=torch.long))
    rewards = torch.zeros(B, T)
    for t in range(1, T):
        done = rollout.complete(samples[:, :t].repeat(rollouts, 1))
        rewards[:, t - 1] = real_probability(done).view(rollouts, B).mean(0)
    rewards[:, T - 1] = real_probability(samples)
    og.zero_grad()
    loss = -(g.log_probs(samples) * rewards).sum(1).mean()
    loss.backward()
    for p in g.parameters():
        torch.nn.utils.clip_grad_norm_([p], 5.0)
    og.step()
    # The delayed copy follows G: the embedding copied, the rest moved 20% of the way.
    with torch.no_grad():
        for (name, r), p in zip(rollout.named_parameters(), g.parameters()):
            r.copy_(p if name.startswith("embedding") else 0.8 * r + 0.2 * p)
    # D: real batches against fresh samples, cross-entropy + 0.2 L2 of the output layer.
    for _ in range(d_steps):
        fake = g.complete(torch.empty(B, 0, dtype=torch.long))
        real = real_data[torch.randint(0, len(real_data), (B,))]
        labels = torch.cat([torch.ones(B), torch.zeros(B)]).long()
        od.zero_grad()
        loss_d = F.cross_entropy(d(torch.cat([real, fake])), labels) + 0.2 * d.l2()
        loss_d.backward()
        od.step()


report("seqgan-round", step, threads=threads, rollouts=rollouts, d_steps=d_steps, batch=B, vocab=V)
