#!/usr/bin/env python3
"""A personalisation case, "a family's stories": TinyStories whose common
character names, pet and home town are replaced by one family's own.

The family (names the shipped models never saw: 0 occurrences in train.txt,
4 tokens each under models/tok.gguf):

    the girl   ysolde     (replaces the story's main girl: lily, lucy, anna, ...)
    the boy    tobiah     (replaces the story's main boy: timmy, ben, tom, ...)
    the pet    pipkin     (replaces the name of the story's dog, cat, puppy, ...)
    the town   wrenfield  (replaces "a small town", "the village", "a big city", ...)

A story joins the family corpus when at least one of the girl or the boy was
replaced. Splits (all disjoint):

    train     stories of ../shared/data/tinystories/train.txt, in order, until
              --train-bytes (default 420,000) of family stories, interleaved
              story by story with --replay-bytes (default 420,000) of the
              stories that follow them in train.txt, unchanged (replay: the
              fine-tune keeps the general stories and the usual names, so the
              tuned model moves away from its base on what is the family's
              only) -> build/fusion/family-train.txt
    dev       stories of valid.txt in [--dev-from, --valid-from) (300,000 to
              400,000), until --dev-bytes (40,000) -> build/fusion/family-dev.txt:
              the fine-tunes' validation (best checkpoint, early stopping), so the
              held-out split chooses nothing. Unseen text like the held-out one:
              train.txt's stories are memorised by the 20-pass llm, and its loss
              there rises as soon as fine-tuning moves it
    held-out  stories of valid.txt past byte --valid-from (default 400,000),
              which no model was trained on, until --valid-bytes (190,000)
              -> bench/data/family/valid.txt (committed)

The bytes of valid.txt before --dev-from are left for the general checks of
bench/fusion/run.sh ([0, 200 KB): test, [200 KB, 300 KB): choosing weights).
The outputs use train.txt's layout: paragraphs separated by a blank line, a
story ended by a single newline. Deterministic: no randomness at all.

usage: bench/fusion/make_family.py [--data DIR] [--train-out PATH] [--dev-out PATH] [--valid-out PATH] [--json]
"""
import argparse
import json
import os
import re
import sys
from collections import Counter

FAMILY = {"girl": "ysolde", "boy": "tobiah", "pet": "pipkin", "town": "wrenfield"}

GIRLS = ["lily", "lucy", "anna", "jane", "sara", "sarah", "mia", "molly", "sue", "sally", "amy", "mary", "emma",
         "susie", "lisa", "kate", "ellie", "zoe", "lila", "jenny", "sophie", "ella", "daisy", "rosie", "bella", "kim"]
BOYS = ["timmy", "ben", "tom", "tim", "jack", "sam", "bob", "joe", "tommy", "billy", "jake", "leo", "john", "mike",
        "jim", "jimmy", "peter", "toby", "bobby", "danny", "mark", "timmy", "fred", "pete"]
PETS = "dog|puppy|cat|kitten|kitty|bunny|rabbit|pet|bird|parrot|fish|hamster|pony"
# "a dog named spot" (only so: "spot" alone is as often a place, "fluffy" a fur)
PET_NAMED = re.compile(r"\b(?:%s) (?:named|called) ([a-z]+)\b" % PETS)
GIRL_NAMED = re.compile(r"\bgirl (?:named|called) ([a-z]+)\b")
BOY_NAMED = re.compile(r"\bboy (?:named|called) ([a-z]+)\b")
TOWN = re.compile(r"\b(?:a|the) (?:(?:small|little|big|quiet|tiny|busy|nice|pretty|sleepy|happy|faraway|far away)"
                  r" )?(?:town|village|city|neighbou?rhood)\b")
# a pet's usual name, when the story has a dog or puppy and the name is not a noun there
PET_NAMES = ["spot", "buddy", "max", "rex", "rover", "fido", "sparky", "lucky"]
NOUN_BEFORE = re.compile(r"\b(?:a|an|the|this|that|its|his|her|their|my|our|same|nice|perfect|quiet|clear|"
                         r"comfortable|special|sunny|cozy|good|new|soft|favorite|little|big|dry|shady|warm) $")
NOT_NAMES = {"the", "a", "an", "her", "his", "very", "big", "little", "small", "was", "and", "who", "that", "in"}
STORY_OPENS = ("once upon a time", "once there was", "once, there")


def word_count(text, w):
    return len(re.findall(r"\b%s\b" % re.escape(w), text))


def main_name(text, named_re, candidates):
    """The story's girl (or boy): named in "a girl named X", else the most
    frequent of the common names (ties: the first in the list)."""
    m = named_re.search(text)
    if m and m.group(1) not in NOT_NAMES:
        return m.group(1)
    counts = Counter({c: word_count(text, c) for c in candidates})
    best = max(candidates, key=lambda c: (counts[c], -candidates.index(c)))
    return best if counts[best] else None


def personalise(story):
    """(new story, what was replaced) or (None, None) if neither child was."""
    done = {}
    girl = main_name(story, GIRL_NAMED, GIRLS)
    boy = main_name(story, BOY_NAMED, BOYS)
    if boy == girl:
        boy = None
    pet = None
    m = PET_NAMED.search(story)
    if m and m.group(1) not in NOT_NAMES and m.group(1) not in (girl, boy):
        pet = m.group(1)
    elif re.search(r"\b(?:dog|puppy)\b", story):
        for name in PET_NAMES:
            hits = [h for h in re.finditer(r"\b%s\b" % name, story)]
            if len(hits) >= 2 and name not in (girl, boy) and \
                    not any(NOUN_BEFORE.search(story[max(0, h.start() - 14):h.start()]) or
                            story[h.end():h.end() + 3] in (" on", " of") for h in hits):
                pet = name
                break
    out = story
    for role, name in (("girl", girl), ("boy", boy), ("pet", pet)):
        if name:
            out, n = re.subn(r"\b%s\b" % re.escape(name), FAMILY[role], out)
            if n:
                done[role] = name
    out, n = TOWN.subn(FAMILY["town"], out)
    if n:
        done["town"] = n
    if "girl" not in done and "boy" not in done:
        return None, None
    return out, done


def stories_single(text):
    """train.txt: a story ends where a single newline is followed by the next one."""
    return [s.strip("\n") for s in re.split(r"(?<!\n)\n(?!\n)", text) if s.strip()]


def stories_paragraphs(text):
    """valid.txt: paragraphs and stories alike are separated by a blank line;
    a paragraph opening with a usual first phrase starts a story."""
    out, cur, started = [], [], False
    for para in text.split("\n\n"):
        para = para.strip("\n")
        if not para:
            continue
        if para.startswith(STORY_OPENS):
            if cur:
                out.append("\n\n".join(cur))
            cur = []
            started = True
        if started:  # the paragraphs before the first opening belong to a story cut in two
            cur.append(para)
    if cur:
        out.append("\n\n".join(cur))
    return out


def take(stories, limit, skip=0):
    kept, size, stats = [], 0, Counter()
    kept_at = []
    for i, s in enumerate(stories[skip:], skip):
        p, done = personalise(s)
        if p is None:
            continue
        b = len(p.encode("utf-8")) + 1
        if size + b > limit:
            break
        kept.append(p)
        kept_at.append(i)
        size += b
        for k in done:
            stats[k] += 1
    return kept, size, stats, (kept_at[-1] + 1 if kept_at else skip)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "tinystories"))
    ap.add_argument("--train-out", default=os.path.join(root, "build", "fusion", "family-train.txt"))
    ap.add_argument("--dev-out", default=os.path.join(root, "build", "fusion", "family-dev.txt"))
    ap.add_argument("--valid-out", default=os.path.join(root, "bench", "data", "family", "valid.txt"))
    ap.add_argument("--train-bytes", type=int, default=420_000)
    ap.add_argument("--replay-bytes", type=int, default=420_000)
    ap.add_argument("--dev-bytes", type=int, default=40_000)
    ap.add_argument("--dev-from", type=int, default=300_000)
    ap.add_argument("--valid-from", type=int, default=400_000)
    ap.add_argument("--valid-bytes", type=int, default=190_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    with open(os.path.join(a.data, "train.txt"), encoding="utf-8") as f:
        train = f.read()
    with open(os.path.join(a.data, "valid.txt"), "rb") as f:
        raw = f.read()
    def part(a_, b_):  # whole paragraphs of valid.txt's bytes [a_, b_)
        t = raw[a_:b_].decode("utf-8", errors="ignore")
        t = t[t.find("\n\n") + 2:]
        return t[:t.rfind("\n\n")] if b_ < len(raw) else t

    train_stories = stories_single(train)
    fam, fam_size, tr_stats, next_at = take(train_stories, a.train_bytes)
    replay, rp_size = [], 0
    for st in train_stories[next_at:]:
        b = len(st.encode("utf-8")) + 1
        if rp_size + b > a.replay_bytes:
            break
        replay.append(st)
        rp_size += b
    tr = [x for pair in zip(fam, replay) for x in pair] + fam[len(replay):] + replay[len(fam):]
    tr_size = fam_size + rp_size
    de, de_size, de_stats, _ = take(stories_paragraphs(part(a.dev_from, a.valid_from)), a.dev_bytes)
    va, va_size, va_stats, _ = take(stories_paragraphs(part(a.valid_from, len(raw))), a.valid_bytes)
    for path, stories in ((a.train_out, tr), (a.dev_out, de), (a.valid_out, va)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(stories) + "\n")
    # how new the family's names are: occurrences in train.txt, and tokens (when build/duet and models/tok.gguf exist)
    check = {}
    for role, name in FAMILY.items():
        check[name] = {"train_occurrences": word_count(train, name)}
        duet, tok = os.path.join(root, "build", "duet"), os.path.join(root, "models", "tok.gguf")
        if os.path.exists(duet) and os.path.exists(tok):
            import subprocess
            r = subprocess.run([duet, "tokenize", "-m", tok, "--no-bos"], input=" " + name, capture_output=True, text=True)
            if r.returncode == 0:
                check[name]["tokens"] = len(r.stdout.split())
    facts = {"family": FAMILY, "names": check,
             "train": {"path": a.train_out, "stories": len(tr), "bytes": tr_size, "replaced": dict(tr_stats),
                       "family_stories": len(fam), "family_bytes": fam_size, "replay_stories": len(replay),
                       "replay_bytes": rp_size},
             "dev": {"path": a.dev_out, "stories": len(de), "bytes": de_size, "replaced": dict(de_stats),
                     "from_valid_bytes": [a.dev_from, a.valid_from]},
             "valid": {"path": a.valid_out, "stories": len(va), "bytes": va_size, "replaced": dict(va_stats),
                       "from_valid_byte": a.valid_from}}
    if a.json:
        print(json.dumps(facts))
    else:
        for k in ("train", "dev", "valid"):
            d = facts[k]
            print("%s: %d stories, %d bytes -> %s (replaced: %s)" % (k, d["stories"], d["bytes"], d["path"],
                  ", ".join("%s %d" % kv for kv in sorted(d["replaced"].items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
