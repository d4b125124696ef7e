"""A small CLIP byte-level BPE vocabulary, built locally for the embedded base model.

The files follow OpenAI CLIP's layout exactly (`vocab.json`: the 256 byte-unicode characters,
the same with the end-of-word marker `</w>`, one token per merge, then the two special tokens;
`merges.txt`: `#version` header and one merge per line), so `CLIPTokenizer.from_pretrained` loads
them like SD 1.5's. Every byte has a token, so any text tokenizes; the corpus words and common
marketing words get merges of their own, so they are one token each.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
END_OF_WORD = "</w>"

# Words users put in marketing captions; they get whole-word tokens so that brand captions do
# not dissolve into bytes. Unseen words still tokenize (byte fallback).
MARKETING_WORDS = """
a an the and or of in on at to with without for from by over under above below beside near
into onto across along around behind between through up down left right top bottom middle
centre center corner side edge front back inside outside this that these those its it
is are be new now free best more most less only just all every each one two three four five
brand style logo logotype wordmark icon mark emblem badge sticker label tag seal monogram
poster banner flyer leaflet brochure billboard ad advert advertisement campaign promo promotion
social media post story reel cover header hero image photo picture illustration render graphic
visual artwork design layout template mockup frame composition scene background foreground
product package packaging bottle can box bag cup mug shirt tshirt cap shoe phone laptop screen
website web app page landing email newsletter card business flat minimal minimalist modern
clean simple bold bright vibrant soft pastel dark light muted neutral warm cool vivid deep pale
sale discount offer deal price percent off buy shop store now today limited edition exclusive
summer winter spring autumn fall holiday christmas season seasonal launch event festival
coffee tea food drink fresh organic natural eco green healthy sport fitness travel tech
fashion beauty home kitchen garden city urban street retro vintage classic elegant luxury premium
geometric abstract pattern texture shape shapes circle circles square squares triangle triangles
rectangle rectangles line lines stripe stripes striped band bands bar bars dot dots dotted grid
wave waves curve curves arrow arrows star stars heart hearts ring rings diamond hexagon
solid gradient plain blank empty split half halves diagonal horizontal vertical wide narrow thin
thick small large big tiny huge round rounded sharp centered centred full corner corners
colour color colours colors palette tone tones shade shades accent accents highlight primary
secondary main white black grey gray silver red orange yellow gold green lime teal turquoise
cyan blue navy indigo purple violet magenta pink rose brown beige cream tan maroon olive
text title headline tagline slogan typography font letter letters word words number numbers
photo photograph portrait landscape studio lighting shadow shadows glow gradient overlay
high quality detailed sharp realistic render 3d 2d vector isometric cartoon sketch watercolor
""".split()


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from bytes to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """BPE merges (in rank order) that turn every given word into a single token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    unique = sorted({w.lower() for w in words if w.strip()})
    tok = Tokenizer(models.BPE(end_of_word_suffix=END_OF_WORD, continuing_subword_prefix=""))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        # Large enough that training only stops once every word is a single token.
        vocab_size=10 * sum(len(w) + 1 for w in unique) + 1024,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix=END_OF_WORD,
        continuing_subword_prefix="",
        special_tokens=[],
    )
    tok.train_from_iterator(unique, trainer=trainer)
    with tempfile.TemporaryDirectory() as tmp:
        tok.model.save(tmp)
        lines = (Path(tmp) / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = []
    for line in lines:
        if not line or line.startswith("#version"):
            continue
        left, right = line.split(" ")
        merges.append((left, right))
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocab layout: bytes, bytes + `</w>`, one token per merge, then BOS and EOS."""
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + END_OF_WORD for c in byte_chars]
    seen = set(tokens)
    for left, right in merges:
        merged = left + right
        if merged not in seen:
            seen.add(merged)
            tokens.append(merged)
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}


def write_clip_tokenizer(
    out_dir: Path, *, words: Iterable[str], model_max_length: int = 77
) -> dict[str, int]:
    """Write `vocab.json`, `merges.txt` and the tokenizer config that `CLIPTokenizer` loads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = learn_merges([*words, *MARKETING_WORDS])
    vocab = build_vocab(merges)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return vocab
