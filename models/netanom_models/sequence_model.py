"""The sequence model: an LSTM over a channel's behavioural letters, its training, and its
scores (higher = more C&C-like).

Input: the channel's letter string, cut to its most recent whole symbols of at most
``max_len`` characters (:func:`letters.tail_window`), one index per character
(:func:`letters.indices`, 0 = padding). Embedding -> one LSTM layer -> the last hidden state
of the row's real length -> one linear unit -> sigmoid.

Training sees each training channel's whole string and, so that the model also learns what
a young channel looks like (the agent scores a channel every time it grows), up to
``prefixes`` shorter prefixes of it (cut at random whole symbols), all with the channel's
label. Early stopping on the validation channels' ROC-AUC; the best epoch is kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from . import letters as L

#: The model and its training. Changing any value changes the bundle part.
SEQUENCE = {
    "max_len": 500,  # characters kept per channel (Slips' models use 500 too)
    "embedding": 16,
    "hidden": 32,
    "prefixes": 2,  # extra training samples per channel: random shorter prefixes
    "batch": 64,
    "learning_rate": 3e-3,
    "max_epochs": 40,
    "patience": 6,  # epochs without a better validation ROC-AUC before stopping
    "seed": 0,
}
N_INDICES = len(L.ALPHABET) + 1  # + padding


def window_text(symbols: list[str], max_len: int) -> str:
    return L.tail_window(symbols, max_len)


@dataclass
class Samples:
    """Model inputs: one letter string per row (already cut to max_len), its label, and the
    channel it comes from."""

    texts: list[str]
    y: np.ndarray
    source: np.ndarray  # index of the channel the row comes from

    def __len__(self) -> int:
        return len(self.texts)


def channel_samples(symbol_lists: list[list[str]], y: np.ndarray, max_len: int, prefixes: int = 0,
                    rng: np.random.Generator | None = None) -> Samples:
    texts, ys, src = [], [], []
    for i, syms in enumerate(symbol_lists):
        texts.append(window_text(syms, max_len))
        ys.append(int(y[i]))
        src.append(i)
        if prefixes and len(syms) >= 2:
            assert rng is not None
            cuts = rng.choice(np.arange(1, len(syms)), size=min(prefixes, len(syms) - 1), replace=False)
            for m in sorted(int(c) for c in cuts):
                texts.append(window_text(syms[:m], max_len))
                ys.append(int(y[i]))
                src.append(i)
    return Samples(texts, np.array(ys, dtype=np.int64), np.array(src, dtype=np.int64))


def index_matrix(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """int64 [n, longest] right-padded with 0, and int64 lengths [n]."""
    idx = [L.indices(t) for t in texts]
    lengths = np.array([len(r) for r in idx], dtype=np.int64)
    if (lengths == 0).any():
        raise ValueError("an empty letter string cannot be scored")
    out = np.zeros((len(idx), int(lengths.max())), dtype=np.int64)
    for i, r in enumerate(idx):
        out[i, : len(r)] = r
    return out, lengths


def _torch():
    import torch

    return torch


def build_model(cfg: dict):
    torch = _torch()
    nn = torch.nn

    class LetterLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(N_INDICES, cfg["embedding"], padding_idx=0)
            self.lstm = nn.LSTM(cfg["embedding"], cfg["hidden"], batch_first=True)
            self.head = nn.Linear(cfg["hidden"], 1)

        def forward(self, idx, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(self.embedding(idx), lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            _, (h, _) = self.lstm(packed)
            return self.head(h[-1]).squeeze(-1)  # logits

    return LetterLSTM()


def _batches(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of rows of similar length (less padding, same rows every run)."""
    order = rng.permutation(len(lengths))
    pool = batch * 16
    out = []
    for s in range(0, len(order), pool):
        chunk = order[s : s + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[j : j + batch] for j in range(0, len(chunk), batch))
    return [out[k] for k in rng.permutation(len(out))]


def torch_scores(model, texts: list[str], batch: int = 512) -> np.ndarray:
    """Sigmoid scores of the torch model (float32), in the order of `texts`."""
    torch = _torch()
    model.eval()
    idx, lengths = index_matrix(texts)
    order = np.argsort(lengths, kind="stable")
    out = np.zeros(len(texts), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(order), batch):
            rows = order[s : s + batch]
            width = int(lengths[rows].max())
            logits = model(torch.from_numpy(idx[rows, :width]), torch.from_numpy(lengths[rows]))
            out[rows] = torch.sigmoid(logits).numpy()
    return out


@dataclass
class Trained:
    model: object
    cfg: dict
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)


def train(train_s: Samples, val_texts: list[str], val_y: np.ndarray, cfg: dict | None = None,
          log=None) -> Trained:
    """Trains with a fixed seed on one CPU thread: the same inputs give the same model."""
    from sklearn.metrics import roc_auc_score

    torch = _torch()
    cfg = dict(SEQUENCE, **(cfg or {}))
    torch.manual_seed(cfg["seed"])
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(cfg["seed"])
    model = build_model(cfg)
    idx, lengths = index_matrix(train_s.texts)
    y = torch.from_numpy(train_s.y.astype(np.float32))
    n_pos = float(train_s.y.sum())
    n_neg = float(len(train_s.y) - n_pos)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(n_neg / max(n_pos, 1.0)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])
    best, best_auc, best_epoch, stale, history = None, -1.0, 0, 0, []
    epoch = 0
    for epoch in range(1, cfg["max_epochs"] + 1):
        model.train()
        total = 0.0
        for rows in _batches(lengths, cfg["batch"], rng):
            width = int(lengths[rows].max())
            opt.zero_grad()
            logits = model(torch.from_numpy(idx[rows, :width]), torch.from_numpy(lengths[rows]))
            loss = loss_fn(logits, y[rows])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(rows)
        auc = float(roc_auc_score(val_y, torch_scores(model, val_texts)))
        history.append({"epoch": epoch, "train_loss": total / len(train_s), "validation_roc_auc": auc})
        if log:
            log(f"  epoch {epoch:2d}: loss {total / len(train_s):.4f}, validation ROC-AUC {auc:.4f}")
        if auc > best_auc:
            best, best_auc, best_epoch, stale = copy.deepcopy(model.state_dict()), auc, epoch, 0
        else:
            stale += 1
            if stale >= cfg["patience"]:
                break
    model.load_state_dict(best)
    model.eval()
    return Trained(model, cfg, best_epoch, epoch, history)


def n_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))
