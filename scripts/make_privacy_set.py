#!/usr/bin/env python3
"""Writes the privacy test set of the redact/restore stages (issue 14):

  tests/data/privacy/prompts.jsonl  one JSON object a line:
      {"prompt": TEXT, "pii": [{"kind": K, "value": V}, ...], "decoys": [TEXT, ...]}
  tests/data/privacy/names.txt      the user's list of names (one a line)

Each prompt is story or request text of the kind the shipped models know
(lower case, TinyStories-like) with 1-4 planted values of the kinds EMAIL,
PHONE, CARD, IBAN, IP, URL, NAME (every kind well represented), and one or
two near-miss decoys that must NOT be redacted: card numbers failing the
Luhn check, IBANs with a wrong checksum, plain years, dates, times, short
numbers, version strings, impossible IPv4 octets, URLs without credentials,
a listed name inside a longer word.

Card numbers are made valid with the Luhn check digit and IBANs with the
ISO 13616 mod-97 check digits, computed here from their definitions; a
quarter of the IBANs are written in lower case (the decoys stay upper
case: a lower-case token that fails its checksum is ordinary text).
Stdlib only, fixed seed: the output is the same on every run.

    python3 scripts/make_privacy_set.py [--out tests/data/privacy] [--n 240]
"""
import argparse
import json
import os
import random

KINDS = ["EMAIL", "PHONE", "CARD", "IBAN", "IP", "URL", "NAME"]

# Names a user might list. None is an ordinary English word, so story text
# never holds one by accident.
NAMES = ["lily", "timmy", "sara", "benny", "mia", "jack", "zoe", "leo", "anna", "max",
         "oliver", "emma", "lucas", "chloe", "noah", "ella", "finn", "ruby", "hugo", "nina",
         "mary ann", "anna schmidt", "jean-luc", "sophie", "kai", "ivy", "omar", "priya",
         "yuki", "mateo"]

# ---------------------------------------------------------------- checksums


def luhn_check_digit(payload):
    """The digit that makes payload + digit pass Luhn."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these are doubled once the check digit is appended
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def iban_number(s):
    """The IBAN moved and read as an integer (ISO 13616)."""
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved))


def iban_ok(s):
    return 15 <= len(s) <= 34 and iban_number(s) % 97 == 1


def make_iban(country, bban):
    check = 98 - iban_number(country + "00" + bban) % 97
    return "%s%02d%s" % (country, check, bban)

# ---------------------------------------------------------------- generators


def digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def letters(rng, n):
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))


def group(s, sizes, sep):
    out, i = [], 0
    for k in sizes:
        out.append(s[i:i + k])
        i += k
    if i < len(s):
        out.append(s[i:])
    return sep.join(out)


CARD_BRANDS = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
               ("6011", 16), ("35", 16), ("62", 19)]


def card_digits(rng):
    prefix, length = rng.choice(CARD_BRANDS)
    payload = prefix + digits(rng, length - len(prefix) - 1)
    return payload + luhn_check_digit(payload)


def format_card(rng, d):
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return d
    sep = " " if style == "space" else "-"
    sizes = {13: [4, 4, 5], 15: [4, 6, 5], 16: [4, 4, 4, 4], 19: [4, 4, 4, 4, 3]}[len(d)]
    return group(d, sizes, sep)


def card(rng):
    return format_card(rng, card_digits(rng))


def bad_card(rng):
    """A card-shaped number whose Luhn check fails (one digit changed)."""
    d = card_digits(rng)
    last = str((int(d[-1]) + rng.randint(1, 9)) % 10)
    d = d[:-1] + last
    assert not luhn_ok(d)
    return format_card(rng, d)


IBAN_FORMATS = {  # BBAN as (letters, digits) runs, from the national formats
    "DE": [("d", 18)], "GB": [("a", 4), ("d", 14)], "NL": [("a", 4), ("d", 10)], "FR": [("d", 10), ("a", 1), ("d", 12)],
    "ES": [("d", 20)], "IT": [("a", 1), ("d", 22)], "BE": [("d", 12)], "CH": [("d", 17)], "AT": [("d", 16)],
    "PL": [("d", 24)], "SE": [("d", 20)], "IE": [("a", 4), ("d", 14)], "NO": [("d", 11)], "DK": [("d", 14)],
}


def iban_plain(rng):
    country = rng.choice(sorted(IBAN_FORMATS))
    bban = "".join(digits(rng, n) if t == "d" else letters(rng, n) for t, n in IBAN_FORMATS[country])
    s = make_iban(country, bban)
    assert iban_ok(s)
    return s


def format_iban(rng, s):
    return s if rng.random() < 0.4 else group(s, [4] * (len(s) // 4), " ")


def iban(rng):
    s = format_iban(rng, iban_plain(rng))
    return s.lower() if rng.random() < 0.25 else s  # typed in lower case, as the rest of the prompt


def bad_iban(rng):
    s = iban_plain(rng)
    check = int(s[2:4])
    wrong = (check + rng.randint(1, 90)) % 97
    if wrong < 2:
        wrong += 2
    s = "%s%02d%s" % (s[:2], wrong, s[4:])
    assert not iban_ok(s)
    return format_iban(rng, s)


def phone(rng):
    style = rng.randrange(10)
    if style == 0:
        return "+44 20 %s %s" % (digits(rng, 4), digits(rng, 4))
    if style == 1:
        return "+1 %s %s %s" % (rng.randint(201, 989), digits(rng, 3), digits(rng, 4))
    if style == 2:
        return "+49 30 %s" % digits(rng, 8)
    if style == 3:
        return "+%d%s" % (rng.choice([1, 33, 44, 49, 81]), digits(rng, 10))
    if style == 4:
        return "(%d) %s-%s" % (rng.randint(201, 989), digits(rng, 3), digits(rng, 4))
    if style == 5:
        return "%d-%s-%s" % (rng.randint(201, 989), digits(rng, 3), digits(rng, 4))
    if style == 6:
        return "%d.%s.%s" % (rng.randint(201, 989), digits(rng, 3), digits(rng, 4))
    if style == 7:
        return "020 %s %s" % (digits(rng, 4), digits(rng, 4))
    if style == 8:
        return "06-%s" % digits(rng, 8)
    return "+33 6 %s %s %s %s" % tuple(digits(rng, 2) for _ in range(4))


def ip(rng):
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(0, 255)) for _ in range(4))
    groups = ["%x" % rng.randint(0, 0xffff) for _ in range(8)]
    style = rng.randrange(3)
    if style == 0:
        return ":".join(groups)
    if style == 1:
        return "2001:db8::" + ":".join(groups[:2])
    return "fe80::" + ":".join(groups[:4])


def email(rng):
    first = rng.choice(["bob", "alice", "j.doe", "kim", "pat", "sam.lee", "robin", "dana", "lee42", "chris_b"])
    tail = rng.choice(["", str(rng.randint(1, 99)), ".k", "+news"])
    dom = rng.choice(["example.com", "mail.example.org", "post.net", "school.edu", "home.co.uk", "inbox.io"])
    return first + tail + "@" + dom


def url(rng):
    user = rng.choice(["admin", "bob", "guest", "deploy", "kim"])
    pw = rng.choice(["hunter2", "s3cret", "pa55word", "letmein", "x9y8z7", "open.sesame"])
    host = rng.choice(["db.example.com", "files.example.org", "192.0.2.10", "backup.local.net"])
    path = rng.choice(["", "/", "/photos", "/data/set?id=7", "/repo.git"])
    scheme = rng.choice(["https", "http", "ftp", "postgres"])
    port = rng.choice(["", ":8080", ":5432"]) if scheme != "ftp" else ""
    return "%s://%s:%s@%s%s%s" % (scheme, user, pw, host, port, path)


def name(rng):
    n = rng.choice(NAMES)
    style = rng.randrange(3)
    if style == 1:
        return " ".join(w.capitalize() for w in n.split(" "))
    return n


GEN = {"EMAIL": email, "PHONE": phone, "CARD": card, "IBAN": iban, "IP": ip, "URL": url, "NAME": name}

SENTENCES = {
    "EMAIL": ["please send the note to {v} before noon.", "her friend wrote every day to {v} about the garden.",
              "write to {v} if you find the little dog."],
    "PHONE": ["you can call mom at {v} if you get lost.", "the number on the card was {v}.",
              "grandpa said to ring {v} when the cake was ready."],
    "CARD": ["dad paid for the toys with the card {v} at the shop.", "my card number is {v}, please keep it safe.",
             "the lady read the card {v} out loud."],
    "IBAN": ["send the money for the bike to {v} by friday.", "the bank account was {v}.",
             "mom paid the school trip into {v} last week."],
    "IP": ["the little robot lived at {v} on the network.", "the server at {v} was very slow today.",
           "tim typed {v} into the computer."],
    "URL": ["the secret page was {v} and nobody knew it.", "log in with {v} to see the pictures.",
            "the robot kept its toys at {v} for later."],
    "NAME": ["{v} went to the park with a red ball.", "one day, {v} found a shiny stone by the river.",
             "the teacher asked {v} to read the story."],
}

OPENERS = ["once upon a time, there was a happy family.", "please help me write a short story.",
           "can you fix this letter for me?", "here is my note, make it nicer.",
           "one sunny morning, the birds sang in the trees.", "summarize this for my friend."]
CLOSERS = ["they all smiled and went home.", "thank you for your help.", "the end.",
           "what should we do next?", "everyone was happy again.", ""]


def decoy(rng):
    kind = rng.randrange(10)
    if kind == 0:
        d = str(rng.randint(1950, 2030))
        return d, "it was the summer of {d}."
    if kind == 1:
        return bad_card(rng), "the old ticket said {d}, but it was not a card."
    if kind == 2:
        return bad_iban(rng), "the paper showed {d}, which was wrong."
    if kind == 3:
        return str(rng.randint(2, 999)), "she counted {d} ducks in the pond."
    if kind == 4:
        return "%d-%02d-%02d" % (rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)), "the party was on {d}."
    if kind == 5:
        return "%d:%02d" % (rng.randint(1, 12), rng.randint(0, 59)), "at {d} they ate cake."
    if kind == 6:
        return "%d.%d.%d" % (rng.randint(1, 9), rng.randint(0, 20), rng.randint(0, 9)), "the game was version {d}."
    if kind == 7:
        return "%d.%d.%d.%d" % (rng.randint(256, 999), rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)), \
            "the sign said {d} in big letters."
    if kind == 8:
        return "https://example.com/" + rng.choice(["stories", "help", "cats?page=2"]), "the story is at {d} for everyone."
    return rng.choice(["lilypad", "maxim", "leopard", "emmaus", "annals"]), "the frog sat on a {d} all day."


def make_prompt(rng, kinds):
    pii, parts = [], [rng.choice(OPENERS)]
    decoys = []
    body = []
    for k in kinds:
        v = GEN[k](rng)
        pii.append({"kind": k, "value": v})
        body.append(rng.choice(SENTENCES[k]).format(v=v))
    for _ in range(rng.randint(1, 2)):
        d, tmpl = decoy(rng)
        decoys.append(d)
        body.append(tmpl.format(d=d))
    rng.shuffle(body)
    parts += body
    parts.append(rng.choice(CLOSERS))
    text = " ".join(p for p in parts if p)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    return {"prompt": text, "pii": pii, "decoys": decoys}


def well_formed(item):
    """Each planted value occurs exactly once, and inside no decoy (so "gone
    from the redacted text" is about that value alone)."""
    text = item["prompt"]
    values = [p["value"] for p in item["pii"]]
    if len(set(v.lower() for v in values)) != len(values):
        return False
    for v in values:
        if text.count(v) != 1 or text.lower().count(v.lower()) != 1:
            return False
        if any(v in d or d in v for d in item["decoys"]):
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "privacy"))
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=14)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    items, i = [], 0
    while len(items) < a.n:
        # kinds rotate so each is planted about as often as the others
        n_pii = 1 + len(items) % 4
        kinds = [KINDS[(i + j) % len(KINDS)] for j in range(n_pii)]
        i += n_pii
        item = make_prompt(rng, kinds)
        if well_formed(item):
            items.append(item)
    with open(os.path.join(a.out, "prompts.jsonl"), "w") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    with open(os.path.join(a.out, "names.txt"), "w") as f:
        f.write("# names to redact (duet generate --pii-names FILE): one a line, matched ignoring case\n")
        for n in NAMES:
            f.write(n + "\n")
    counts = {k: 0 for k in KINDS}
    for it in items:
        for p in it["pii"]:
            counts[p["kind"]] += 1
    print(json.dumps({"prompts": len(items), "pii": counts, "decoys": sum(len(it["decoys"]) for it in items)}))


if __name__ == "__main__":
    main()
