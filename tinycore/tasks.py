"""A synthetic translation task generated in code: dates written by people -> ISO 8601.

    "7 March 2024", "March 7, 2024", "07.03.2024", "Thu 7 Mar 2024"  ->  "2024-03-07"

The output reorders the input (the year moves to the front, the day to the back), turns month
names into two digits and pads one-digit days with a zero, so a model must find, for every
character it writes, the part of the source that decides it: the alignment that cross-attention
learns. The weekday of the last format is right (from the calendar) and never needed.

Every calendar date of the chosen years belongs to exactly one split, drawn with a fixed
generator, so a held-out date has never been seen in training in any of its spellings.

`Seq2SeqTokenizer` is a character tokenizer with three special tokens: PAD = 0 (fills a batch
to its longest sequence), BOS = 1 (starts the decoder's input), EOS = 2 (ends a target).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import torch

from .layers import check_token_ids

__all__ = ["MONTHS", "WEEKDAYS", "DATE_FORMATS", "TARGET_FORMAT", "format_date", "DateTask", "Seq2SeqTokenizer",
           "date_batches"]

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DATE_FORMATS = ("7 March 2024", "March 7, 2024", "07.03.2024", "Thu 7 Mar 2024")  # named by how they write it
TARGET_FORMAT = "2024-03-07"  # ISO 8601
SPECIALS = ("<pad>", "<bos>", "<eos>")


def format_date(date: datetime.date, style: str) -> str:
    """`date` written in one of DATE_FORMATS, or in TARGET_FORMAT."""
    d, m, y, month, weekday = date.day, date.month, date.year, MONTHS[date.month - 1], WEEKDAYS[date.weekday()]
    formats = {
        "7 March 2024": f"{d} {month} {y}", "March 7, 2024": f"{month} {d}, {y}", "07.03.2024": f"{d:02d}.{m:02d}.{y}",
        "Thu 7 Mar 2024": f"{weekday[:3]} {d} {month[:3]} {y}", TARGET_FORMAT: f"{y}-{m:02d}-{d:02d}",
    }
    if style not in formats:
        raise ValueError(f"unknown date format {style!r}; choose one of {(*DATE_FORMATS, TARGET_FORMAT)}")
    return formats[style]


class Seq2SeqTokenizer:
    """Characters -> ids 3.. in sorted order; PAD = 0, BOS = 1, EOS = 2."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {ch: i + len(SPECIALS) for i, ch in enumerate(self.chars)}
        self.itos = {**dict(enumerate(SPECIALS)), **{i: ch for ch, i in self.stoi.items()}}

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def encode(self, text: str, eos: bool = False) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"Seq2SeqTokenizer.encode: characters not in the vocabulary: {unknown!r}")
        return [self.stoi[ch] for ch in text] + ([self.eos_id] if eos else [])

    def batch(self, texts: Sequence[str], eos: bool = False, device=None) -> torch.Tensor:
        """Encode and pad with PAD to the longest. Shapes: B strings -> (B, T_max) long"""
        rows = [self.encode(t, eos) for t in texts]
        out = torch.full((len(rows), max(map(len, rows))), self.pad_id, dtype=torch.long)  # (B, T_max)
        for i, row in enumerate(rows):
            out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out.to(device)

    def decode(self, ids) -> str:
        """ids (T,) -> the text up to the first EOS; BOS and PAD are skipped."""
        ids = torch.as_tensor(ids)
        if ids.ndim != 1:
            raise ValueError(f"Seq2SeqTokenizer.decode expects a 1-D sequence of ids, got shape {tuple(ids.shape)}")
        check_token_ids(ids, self.vocab_size, what="ids")
        out = []
        for i in ids.tolist():
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def __repr__(self) -> str:
        return f"Seq2SeqTokenizer(vocab_size={self.vocab_size})"


class DateTask:
    """Dates from first_year to last_year, split once into training and held-out dates.

    `pairs(split, n, generator)` draws n (source, target) strings: a random date of the split,
    written in a random format, and its ISO form.
    """

    def __init__(self, first_year: int = 1950, last_year: int = 2049, held_out_fraction: float = 0.1,
                 formats: Sequence[str] = DATE_FORMATS, seed: int = 0):
        if not 0.0 < held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction should be in (0, 1), got {held_out_fraction}")
        for style in formats:
            format_date(datetime.date(2024, 3, 7), style)  # an unknown format fails here, not mid-training
        start, end = datetime.date(first_year, 1, 1), datetime.date(last_year, 12, 31)
        dates = [start + datetime.timedelta(days=i) for i in range((end - start).days + 1)]
        order = torch.randperm(len(dates), generator=torch.Generator().manual_seed(seed)).tolist()
        n_held_out = round(held_out_fraction * len(dates))
        self.formats = tuple(formats)
        self.held_out_dates = sorted(dates[i] for i in order[:n_held_out])
        self.train_dates = sorted(dates[i] for i in order[n_held_out:])
        every_style = (*DATE_FORMATS, TARGET_FORMAT)
        alphabet = "".join(format_date(d, s) for d in dates[:366] for s in every_style) + "0123456789"
        self.tokenizer = Seq2SeqTokenizer(alphabet)  # every character any format can write

    def pairs(self, split: str, n: int, generator: torch.Generator) -> list[tuple[str, str]]:
        if split not in ("train", "held_out"):
            raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
        dates = self.train_dates if split == "train" else self.held_out_dates
        which = torch.randint(len(dates), (n,), generator=generator).tolist()
        styles = torch.randint(len(self.formats), (n,), generator=generator).tolist()
        return [(format_date(dates[i], self.formats[s]), format_date(dates[i], TARGET_FORMAT))
                for i, s in zip(which, styles)]


def date_batches(task: DateTask, split: str, batch_size: int, device=None):
    """A sampler for tinycore.train: generator -> (source ids (B, S), target ids + EOS (B, T))."""

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        sources, targets = zip(*task.pairs(split, batch_size, generator))
        tok = task.tokenizer
        return tok.batch(sources, device=device), tok.batch(targets, eos=True, device=device)

    return sample
