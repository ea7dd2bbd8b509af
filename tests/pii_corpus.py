"""A generated PII corpus: planted values of every kind in every field and trace format, and look-alikes.

``corpus_project(folder)`` makes a demo project whose sessions carry ``PLANTED`` values (emails,
phones as text and as JSON numbers, cards, IBANs, SSNs, IPs, API keys, AWS secret keys,
passwords, names from the configured list) in case values, case keys, nested case values,
session ids, config versions, reviewers, reasoning, precedents, conditions and citations, written
as native JSONL, a Phoenix/OpenInference span export and OTLP JSON; and ``LOOK_ALIKES`` (order
ids, versions, amounts, dates, timestamps, hashes) that must stay as they are. Every value is
checked when it is made (Luhn, mod-97, ``phonenumbers``), so the corpus holds only real shapes.
Used by tests/test_security.py and bench/redaction.py.
"""
from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import yaml

from improver.demo import make_demo_project
from improver.redact import IBAN_LENGTHS, luhn_valid

NAMES = ["Ana Lopez", "Bruno Keller", "Chioma Okafor", "Dmitri Volkov", "Elena Rossi", "Farah Haddad", "Goran Petrovic",
         "Hana Suzuki", "Ivan Horvat", "Jonas Berg", "Kwame Mensah", "Lucia Ferreira", "Mateo Alvarez", "Nadia Karim",
         "Oskar Lind", "Priya Raman", "Quentin Moreau", "Rosa Delgado", "Samir Aziz", "Tomas Novak"]
US_AREAS = ["212", "415", "646", "312", "617", "206", "303", "512", "404", "305", "718", "213"]


@dataclass(frozen=True)
class Plant:
    kind: str
    value: str | int
    field: str
    format: str

    @property
    def needles(self) -> list[str]:
        """The strings that must not appear in any artifact (the value, and its digits for numbers)."""
        text = str(self.value)
        needles = [text]
        digits = "".join(c for c in text if c.isdigit())
        if self.kind in ("card", "phone", "ssn", "iban") and len(digits) >= 9 and digits != text:
            needles.append(digits)
        return needles


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return next(body + d for d in string.digits if luhn_valid(body + d))


def iban(country: str, rng: random.Random) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(IBAN_LENGTHS[country] - 4))
    rearranged = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in rearranged)) % 97
    return f"{country}{check:02d}{bban}"


def us_phone(rng: random.Random) -> str:
    while True:
        number = rng.choice(US_AREAS) + str(rng.randint(200, 999)) + f"{rng.randint(0, 9999):04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number, "US")):
            return number


def token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        out = "".join(rng.choice(alphabet) for _ in range(n))
        classes = [test for test in (str.isdigit, str.isupper, str.islower) if any(test(c) for c in alphabet)]
        if all(any(test(c) for c in out) for test in classes):
            return out


def values(rng: random.Random) -> list[tuple[str, str | int]]:
    """(kind, value) pairs, each written the way people write them."""
    out: list[tuple[str, str | int]] = []
    for i in range(22):
        first, last = NAMES[i % len(NAMES)].lower().split()
        out.append(("email", rng.choice([f"{first}.{last}{i}@acme-corp.com", f"{first[0]}{last}+po{i}@mail.example.co.uk",
                                         f"{last.upper()}.{first}@Vendor{i}.io"])))
    for i in range(34):
        number = us_phone(rng)
        fmt = i % 7
        out.append(("phone", [f"({number[:3]}) {number[3:6]}-{number[6:]}", f"{number[:3]}-{number[3:6]}-{number[6:]}",
                              f"{number[:3]}.{number[3:6]}.{number[6:]}", number, f"+1 {number[:3]} {number[3:6]} {number[6:]}",
                              int(number), int("1" + number)][fmt]))
    for text in ("+44 20 7946 0018", "+44 161 496 0753", "+49 30 901820", "+33 1 42 68 53 00", "+61 2 9374 4000",
                 "030 1234 5678", "+91 22 2778 2000", "+81 3-3224-9999"):
        out.append(("phone", text))
    for i in range(34):
        prefix, length = [("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16), ("4", 13), ("2221", 16)][i % 7]
        digits = luhn_complete(prefix, length, rng)
        groups = [digits[:4], digits[4:10], digits[10:]] if length == 15 else [digits[k:k + 4] for k in range(0, length, 4)]
        fmt = i % 6
        out.append(("card", [" ".join(groups), "-".join(groups), ".".join(groups), digits, int(digits),
                             f"ref 12 {' '.join(groups)}"][fmt] if length != 13 else digits))
    for i, country in enumerate(["DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE", "AT", "PL", "SE", "IE", "PT", "DK", "NO", "FI"]):
        code = iban(country, rng)
        spaced = " ".join(code[k:k + 4] for k in range(0, len(code), 4))
        out.append(("iban", [code, spaced, code.lower(), spaced.lower()][i % 4]))
    for i in range(18):
        area = rng.choice([n for n in range(1, 900) if n != 666])
        sep = "-" if i % 3 else " "
        out.append(("ssn", f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"))
    for i in range(10):
        out.append(("ip", [f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                           f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                           f"2001:db8:{rng.randint(1, 9999):x}::{rng.randint(1, 9999):x}"][i % 3]))
    for i in range(8):
        out.append(("secret", "sk-" + ("proj-" if i % 2 else "") + token(rng, 48)))
        out.append(("secret", "sk-ant-api03-" + token(rng, 64, string.ascii_letters + string.digits + "_-") + "AA"))
        out.append(("secret", "AKIA" + token(rng, 16, string.ascii_uppercase + string.digits)))
        out.append(("secret", "ghp_" + token(rng, 36)))
        out.append(("aws_secret", token(rng, 40, string.ascii_letters + string.digits + "/+")))
        out.append(("password", token(rng, 12, string.ascii_letters + string.digits + "!#%&*")))
    for name in NAMES:
        out.append(("name", name))
    return out


LOOK_ALIKES: list[str | int] = [
    "ORD-2026-004417", "PO-88213", "INV-000123456", "SKU 4411-AB", "ticket #48213", "v2.14.3", "1.10.0", "3.12.7",
    "release 2026.06", "$12,480.50", "4200.00 EUR", "$3,723", "12.5%", "2026-06-25", "06/25/2026", "25.06.2026",
    "2026-06-25T09:00:00Z", "09:30:00", "Q3 2026", "94107", "10115 Berlin", "room 4-112", "build 20260625",
    "sha 3f786850e387550fdab836ed7e6dc881de23001b", "commit 9fceb02", "uuid 123e4567-e89b-12d3-a456-426614174000",
    "PR-000117", "case 12345", "batch 778899", "line 42 of 96", "12 x 48 units", "1,000,000 tokens", "GPU 2 of 8",
    "SLA 99.95%", "port 8080", "HTTP 404", "ISO 27001", "RFC 3339", "EAN 4006381333931", "lot 2026-117",
    1780000000, 20260625, 1234567890, 4200, 99950, 1780000000000, 987654321, 31536000, 86400, 65535,
]


def look_alikes() -> list[str | int]:
    """≥100 values that must stay: the fixed list and generated order ids, versions, amounts and dates."""
    rng = random.Random(3)
    out = list(LOOK_ALIKES)
    for i in range(60):
        out.append([f"ORD-{rng.randint(100000, 999999)}", f"v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
                    f"${rng.randint(1, 99)},{rng.randint(100, 999)}.{rng.randint(10, 99)}",
                    f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", f"INV-{rng.randint(10000, 99999)}",
                    f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d} USD"][i % 6])
    return out


FIELDS = ("case_value", "case_key", "case_nested", "case_list", "agent_reasoning", "human_reasoning", "conditions",
          "cited", "config_version", "reviewer", "session_id", "precedent")


def place(decision: dict, review: dict, kind: str, value, field: str) -> None:
    """Put ``value`` into one field of a session's decision and review events."""
    text = f"password={value}" if kind == "password" else (
        f"aws_secret_access_key = {value}" if kind == "aws_secret" else str(value))
    case = decision["case"]
    if isinstance(value, int):
        case[f"contact_number_{len(case)}"] = value
    elif field == "case_value":
        case[f"contact_{len(case)}"] = f"Reach them via {text} today"
    elif field == "case_key":
        case[f"note {text}"] = "see key"
    elif field == "case_nested":
        case.setdefault("details", {}).setdefault("contacts", []).append({"value": text})
    elif field == "case_list":
        case.setdefault("tags", []).append(text)
    elif field == "agent_reasoning":
        decision["reasoning"] += f" Customer wrote from {text}."
    elif field == "human_reasoning":
        review["reasoning"] += f" (Reporter: {text})"
    elif field == "conditions":
        review["conditions"] = review.get("conditions", []) + [f"contact is {text}"]
    elif field == "cited":
        decision["cited"] = decision.get("cited", []) + [f"email:{text}"]
    elif field == "config_version":
        decision["config_version"] = f"cfg-{text}"
    elif field == "reviewer":
        review["reviewer"] = text
    elif field == "session_id":
        decision["session_id"] = review["session_id"] = text
        decision["case"]["request_id"] = text
    elif field == "precedent":
        review["precedent"] = f"{review.get('precedent') or 'untagged'} {text}"


def span_rows(decision: dict, review: dict, index: int) -> list[dict]:
    """A session as Phoenix span-export rows (the layout of examples/procurement/tracing.py)."""
    def span(name, span_id, inputs, outputs):
        return {"name": name, "span_kind": "CHAIN", "parent_id": None, "start_time": decision["ts"],
                "end_time": decision["ts"], "context.span_id": span_id, "context.trace_id": f"{index:032x}",
                "attributes.session.id": decision["session_id"], "attributes.input.value": json.dumps(inputs),
                "attributes.output.value": json.dumps(outputs), "attributes.metadata.config_version":
                decision.get("config_version")}
    run_id, review_id = f"a{index:015x}", f"b{index:015x}"
    notes = {"reasoning": review["reasoning"], "precedent": review["precedent"], "conditions": review["conditions"]}
    return [span("process.run", run_id, {"case": decision["case"]},
                 {k: decision[k] for k in ("decision", "confidence", "reasoning", "cited")}),
            span("override.run", review_id, {"agent": decision["decision"]}, {"decision": review["decision"], **notes}),
            {"span_id": review_id, "annotation_name": "Reviewer Decision", "annotator_kind": "HUMAN",
             "result.label": review["decision"], "result.explanation": review["reasoning"],
             "metadata": {"reviewer": review["reviewer"], "notes": notes}, "updated_at": review["ts"]}]


def otlp_line(rows: list[dict]) -> str:
    spans = [{"traceId": r["context.trace_id"], "spanId": r["context.span_id"], "name": r["name"],
              "startTimeUnixNano": "1780000000000000000",
              "attributes": [{"key": k.removeprefix("attributes."), "value": {"stringValue": str(v)}}
                             for k, v in r.items() if k.startswith("attributes.") and v is not None]}
             for r in rows if "annotation_name" not in r]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []},
                                          "scopeSpans": [{"scope": {"name": "corpus"}, "spans": spans}]}]}) + "\n"


def corpus_project(folder: Path, n: int = 72, seed: int = 11) -> tuple[Path, list[Plant], list, list[Path]]:
    """A demo project with the corpus planted; returns (project, plants, look-alikes, trace files to ingest)."""
    project = make_demo_project(folder, n=n)
    data = yaml.safe_load((project / "improver.yaml").read_text())
    data["redaction"] = {"names": NAMES, "phone_regions": ["US", "GB", "DE"]}
    (project / "improver.yaml").write_text(yaml.safe_dump(data))
    events = [json.loads(line) for line in (project / "traces.jsonl").read_text().splitlines() if line.strip()]
    decisions = {e["session_id"]: e for e in events if e["type"] == "decision"}
    sessions = [(decisions[e["session_id"]], e) for e in events if e["type"] == "review"]
    rng = random.Random(seed)
    plants: list[Plant] = []
    formats = ["native", "native", "openinference", "otlp"]
    for number, (kind, value) in enumerate(values(rng)):
        index = number % len(sessions)
        fmt = formats[(index // 4) % len(formats)]
        field = FIELDS[number % len(FIELDS)]
        if field in ("session_id", "precedent") and (number // len(FIELDS)) % 3:
            field = "human_reasoning"  # keep most sessions' ids and tags, so mining still has precedents
        if fmt == "otlp" and field in ("reviewer", "conditions", "precedent", "human_reasoning"):
            field = "agent_reasoning"  # OTLP carries no annotations: the review's fields come from its span
        decision, review = sessions[index]
        if field == "session_id" and any(p.field == "session_id" and p.value == decision["session_id"] for p in plants):
            field = "agent_reasoning"
        if field == "session_id" and decision["session_id"] != decision["case"]["request_id"]:
            field = "agent_reasoning"  # one planted id per session
        place(decision, review, kind, value, field)
        plants.append(Plant(kind, value, field if not isinstance(value, int) else "case_number", fmt))
    similar = look_alikes()
    for number, value in enumerate(similar):
        decision, review = sessions[number % len(sessions)]
        decision["case"][f"ref_{number // len(sessions)}" if isinstance(value, str) else f"count_{number // len(sessions)}"] = value
    native, spans, otlp = project / "traces.jsonl", project / "spans.jsonl", project / "otlp.json"
    with native.open("w") as a, spans.open("w") as b, otlp.open("w") as c:
        for index, (decision, review) in enumerate(sessions):
            fmt = formats[(index // 4) % len(formats)]
            if fmt == "native":
                a.write(json.dumps(decision) + "\n" + json.dumps(review) + "\n")
            elif fmt == "openinference":
                b.writelines(json.dumps(row) + "\n" for row in span_rows(decision, review, index))
            else:
                c.write(otlp_line(span_rows(decision, review, index)))
    return project, plants, similar, [native, spans, otlp]
