#!/usr/bin/env python3
"""Build a LAMBADA-style cloze benchmark from TinyStories valid.txt.

Deterministic (no randomness: ties are broken by a SHA-256 of the target's
character offset in its story and the word), Python 3 standard library only. See
bench/routing/README.md for what the items are and how they are scored.

    python3 bench/routing/build_cloze.py            # write bench/data/cloze-{calib,test}.jsonl
    python3 bench/routing/build_cloze.py --check    # rebuild into a temp dir, compare byte for byte
    python3 bench/routing/build_cloze.py --dense F  # also every admissible target of the calibration
                                                    # stories into F (router fitting; not committed)
"""
import argparse
import collections
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_INPUT = os.path.join(ROOT, "..", "shared", "data", "tinystories", "valid.txt")
DEFAULT_OUTDIR = os.path.join(ROOT, "bench", "data")
SPLITS = ("calib", "test")

# The same story openers as duet train (src/train/data.c): in valid.txt stories
# and paragraphs are both separated by a blank line.
STORY_OPENERS = ("once upon a time", "once there was", "once, there")

MAX_PROMPT_CHARS = 600   # the passage is at most the last 600 characters before the target
MIN_PROMPT_WORDS = 40    # shorter passages are not used
MAX_ITEMS_PER_STORY = 2

# Function words, pronouns, auxiliaries and the commonest story verbs/adjectives:
# never a target. Targets are content words, mostly names and nouns.
STOPWORDS = set("""
a about above after again against all almost along also always am an and another any are around as at
away back be because been before began behind being below best better between big both but by came can
cannot come could day did do does doing done down during each even ever every far felt few find first
for found from gave get gets getting give go goes going gone good got had has have having he her here
hers herself him himself his how i if in into is it its itself just know knew last left let lets like
liked little look looked looking lot lots made make many may me might more most much must my myself
need needed never new next no nor not now of off oh old on once one only or other our ours out over own
put ran really said same saw say says see seen she should so some something soon started still such
take than that the their theirs them themselves then there these they thing things think this those
thought through time to together too took tried try two under until up upon us very want wanted was
way we well went were what when where which while who whom why will with without would yes yet you
your yours yourself happy sad big small very much always again asked told came felt loved love smiled
day days time times decided realized everyone everything anything nothing someone anyone something
okay ok hello hi goodbye bye please thank thanks sorry wow yay
""".split())

WORD_RE = re.compile(r"[a-z]+")
DETERMINERS = {"the", "a", "an", "his", "her", "my", "your", "their", "its", "our", "this", "that",
               "some", "new", "big", "little", "small", "red", "blue"}


def read_stories(path):
    """Split valid.txt into stories: a paragraph opening with a story opener starts a story."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    stories = []
    cur = []
    for para in text.split("\n\n"):
        if not para.strip():
            continue
        if cur and para.lstrip("\n").startswith(STORY_OPENERS):
            stories.append("\n\n".join(cur).strip())
            cur = []
        cur.append(para)
    if cur:
        stories.append("\n\n".join(cur).strip())
    return stories


def sentence_starts(s):
    """Offsets in s where a sentence starts (after . ! ? [quote] and whitespace, or a newline)."""
    out = [0]
    for m in re.finditer(r'(?:[.!?]["\']?[ \n]+|\n+)', s):
        out.append(m.end())
    return out


def cut_passage(story, end, story_starts=None):
    """The passage before offset end (the space before the target is excluded): at most
    MAX_PROMPT_CHARS characters, starting at a sentence start (else a word start).
    story_starts: sentence_starts(story), to save computing those of story[:end] (the
    same below end - 2, and only starts in the window's first half are used)."""
    lo = max(0, end - MAX_PROMPT_CHARS)
    if lo == 0:
        start = 0
    else:
        if story_starts is None:
            story_starts = sentence_starts(story[:end])
        starts = [p for p in story_starts if lo <= p < end - MAX_PROMPT_CHARS // 2]
        if starts:
            start = starts[0]
        else:  # no sentence start in the first half of the window: cut at a word boundary
            sp = story.find(" ", lo, end)
            start = sp + 1 if sp >= 0 else lo
    return story[start:end].strip()


def names_of(story):
    """Words introduced as names: 'named X', 'called X', 'name was/is X'."""
    return set(re.findall(r"\b(?:named|called|name was|name is)\s+([a-z]+)", story))


def candidates(story):
    """Every admissible target occurrence of the story, as (rank, tie, offset, word)."""
    names = names_of(story)
    nounish = set()
    words = list(WORD_RE.finditer(story))
    for i in range(1, len(words)):
        if words[i - 1].group() in DETERMINERS:
            nounish.add(words[i].group())
    seen = collections.Counter()
    starts = sentence_starts(story)
    out = []
    for i, m in enumerate(words):
        w = m.group()
        p, q = m.start(), m.end()
        first = seen[w] == 0
        seen[w] += 1
        if first or len(w) < 3 or w in STOPWORDS:
            continue
        if p == 0 or story[p - 1] != " ":
            continue  # the continuation must start with " word"
        if i and words[i - 1].group() in ("a", "an") and words[i - 1].end() == p - 1:
            continue  # "a X" introduces a new X: not a reference back to the earlier one
        nxt = story[q:q + 1]
        if nxt and (nxt.isalpha() or not nxt.isascii() or nxt == "-"):
            continue
        if nxt == "'" and story[q + 1:q + 2].isalpha():  # contraction or possessive: only "'s"
            if story[q + 1:q + 2] != "s" or story[q + 2:q + 3].isalpha():
                continue
        prompt = cut_passage(story, p - 1, starts)
        if not prompt.isascii() or len(prompt.split()) < MIN_PROMPT_WORDS:
            continue
        if not story[:p - 1].endswith(prompt):
            continue  # whitespace before the space ("\n\n emma"): the continuation is not " emma"
        if not re.search(r"(?<![a-z])" + w + r"(?![a-z])", prompt):
            continue  # the earlier occurrence must be inside the passage
        rank = 0 if w in names else (1 if w in nounish else 2)
        tie = hashlib.sha256(("%d:%s" % (p, w)).encode()).hexdigest()
        out.append((rank, tie, p, w, prompt))
    return out


def split_of(idx):
    return "calib" if idx % 5 < 2 else "test"


def build(stories):
    items = {s: [] for s in SPLITS}
    for idx, story in enumerate(stories):
        split = split_of(idx)
        chosen = []
        for rank, tie, p, w, prompt in sorted(candidates(story)):
            if len(chosen) == MAX_ITEMS_PER_STORY:
                break
            if any(w == cw for _, cw, _ in chosen):
                continue
            chosen.append((p, w, prompt))
        for k, (p, w, prompt) in enumerate(sorted(chosen)):
            items[split].append({"prompt": prompt, "answer": w, "id": "s%04d-%d" % (idx, k), "story": idx})
    return items


def build_dense(stories):
    """Every admissible target of the calibration stories (all occurrences, in story
    order): about 9 times the calibration split's items, for fitting routers. The
    stories are the calibration split's, so nothing of the test split leaks in."""
    out = []
    for idx, story in enumerate(stories):
        if split_of(idx) != "calib":
            continue
        for k, (rank, tie, p, w, prompt) in enumerate(sorted(candidates(story), key=lambda c: c[2])):
            out.append({"prompt": prompt, "answer": w, "id": "s%04d-d%d" % (idx, k), "story": idx})
    return out


def verify_item(it, stories):
    p, w, st = it["prompt"], it["answer"], stories[it["story"]]
    assert p == p.strip() and p.isascii() and p == p.lower(), it["id"]
    assert len(p) <= MAX_PROMPT_CHARS and len(p.split()) >= MIN_PROMPT_WORDS, it["id"]
    assert re.fullmatch(r"[a-z]{3,}", w) and w not in STOPWORDS, it["id"]
    assert re.search(r"(?<![a-z])" + w + r"(?![a-z])", p), it["id"]  # seen earlier in the passage
    # the passage is story text followed by " answer" and a non-letter (at one of its occurrences)
    k, ok = st.find(p + " " + w), False
    while k >= 0 and not ok:
        ok = not st[k + len(p) + 1 + len(w):][:1].isalpha()
        k = st.find(p + " " + w, k + 1)
    assert ok, it["id"]


def verify(items, stories):
    """The invariants of README.md; an AssertionError names the first item that breaks one."""
    seen_story = {}
    per_story = collections.Counter()
    for split in SPLITS:
        for it in items[split]:
            assert seen_story.setdefault(it["story"], split) == split, it["id"]  # split by story
            per_story[it["story"]] += 1
            assert per_story[it["story"]] <= MAX_ITEMS_PER_STORY, it["id"]
            verify_item(it, stories)


def write_jsonl(path, rows):
    """Through a temporary file and a rename: an interrupted build leaves no half file."""
    with open(path + ".tmp", "wb") as f:
        for it in rows:
            f.write((json.dumps(it, ensure_ascii=True) + "\n").encode("ascii"))
    os.replace(path + ".tmp", path)


def write(items, outdir):
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for split in SPLITS:
        path = os.path.join(outdir, "cloze-%s.jsonl" % split)
        write_jsonl(path, items[split])
        paths.append(path)
    return paths


def summary(items):
    lines = []
    total = sum(len(v) for v in items.values())
    lines.append("items: %d (%s)" % (total, ", ".join("%s %d" % (s, len(items[s])) for s in SPLITS)))
    for s in SPLITS:
        lines.append("stories in %s: %d" % (s, len({it["story"] for it in items[s]})))
    allit = [it for s in SPLITS for it in items[s]]
    n = sorted(len(it["prompt"].split()) for it in allit)
    if n:
        q = lambda f: n[min(len(n) - 1, int(f * len(n)))]
        lines.append("prompt words: min %d, p10 %d, p25 %d, median %d, p75 %d, p90 %d, max %d, mean %.1f"
                     % (n[0], q(0.1), q(0.25), q(0.5), q(0.75), q(0.9), n[-1], sum(n) / len(n)))
        hist = collections.Counter(min(x // 20 * 20, 140) for x in n)
        lines.append("prompt words histogram: " + ", ".join(
            ("%d-%d: %d" % (b, b + 19, hist[b])) if b < 140 else ("140+: %d" % hist[b]) for b in sorted(hist)))
    top = collections.Counter(it["answer"] for it in allit).most_common(10)
    lines.append("distinct answers: %d" % len({it["answer"] for it in allit}))
    lines.append("top answers: " + ", ".join("%s %d" % (w, c) for w, c in top))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=DEFAULT_INPUT, help="TinyStories valid.txt (default: %(default)s)")
    ap.add_argument("--outdir", default=DEFAULT_OUTDIR, help="output folder (default: %(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temporary folder and compare byte for byte with --outdir; exit 1 on difference")
    ap.add_argument("--dense", metavar="FILE",
                    help="also write every admissible target of the calibration stories to FILE")
    args = ap.parse_args()

    stories = read_stories(args.input)
    items = build(stories)
    verify(items, stories)
    print("stories: %d" % len(stories))
    print(summary(items))
    if args.dense:
        dense = build_dense(stories)
        calib_stories = {it["story"] for it in items["calib"]}
        for it in dense:
            assert split_of(it["story"]) == "calib", it["id"]
            verify_item(it, stories)
        write_jsonl(args.dense, dense)
        print("wrote %s: %d items of %d calibration stories (%d of them in cloze-calib)"
              % (args.dense, len(dense), len({it["story"] for it in dense}),
                 len(calib_stories & {it["story"] for it in dense})))
    if not args.check:
        for p in write(items, args.outdir):
            print("wrote %s (%d bytes)" % (os.path.relpath(p), os.path.getsize(p)))
        return 0
    tmp = tempfile.mkdtemp(prefix="cloze-check-")
    try:
        bad = 0
        for p in write(items, tmp):
            ref = os.path.join(args.outdir, os.path.basename(p))
            with open(p, "rb") as a:
                new = a.read()
            try:
                with open(ref, "rb") as b:
                    old = b.read()
            except OSError:
                old = None
            if old != new:
                bad += 1
                print("DIFFERS: %s" % os.path.relpath(ref), file=sys.stderr)
            else:
                print("identical: %s (sha256 %s)" % (os.path.relpath(ref), hashlib.sha256(new).hexdigest()[:16]))
        return 1 if bad else 0
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
