"""Where the spread layout puts a user's sessions and magic links on Redis Cluster.

A namespace's sessions (and its magic links) are split into ``BUCKETS`` buckets; each
bucket is a hash tag of its own, and the tags are chosen so their slots are evenly
spaced over the 16384 slots (``TAGS[b]`` sits in slot ``64 * b + 32``): whatever
contiguous slot ranges the masters own, each master holds buckets in proportion to its
slots. A user's records, its index and its sessions' public ids sit in the user's
bucket (``user_bucket``), so every per-user operation stays one script in one slot.

A lookup by token knows only the token's hash, so the hash must name the bucket:
``hash_bucket`` is the hash's first byte, and the tokens authstore issues for a user
are drawn until their hash falls in the user's bucket (``Routing.new_token``: about
``BUCKETS`` SHA-256 trials, a fraction of a millisecond). The token's format does not
keeps its 256 random bits, followed by two characters. A caller-supplied or pre-hashed token whose hash
falls elsewhere gets a pointer in its hash's bucket to the user's bucket (one more
round trip on every lookup). Public ids carry their bucket in their first two
characters (``Routing.new_public_id``).
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["BUCKETS", "TAGS", "Routing", "hash_bucket", "id_bucket", "user_bucket"]

BUCKETS = 256
"""Buckets per namespace and store: 64 slots apart, so a master's share of the buckets
is its share of the slots to within one bucket (0.4 %)."""

TAGS: tuple[str, ...] = (
    "asad6u",
    "asay14",
    "asahnc",
    "asadk2",
    "asanx3",
    "asab9j",
    "asajm5",
    "asafhd",
    "asamid",
    "asaal5",
    "asaauz",
    "asaey3",
    "asaoj2",
    "asacoc",
    "asar04",
    "asagze",
    "asad25",
    "asahsl",
    "asayh3",
    "asador",
    "asafuk",
    "asaj42",
    "asajiu",
    "asawn4",
    "asa0nl",
    "asaahu",
    "asaa52",
    "asamtk",
    "asaggj",
    "asari3",
    "asacrl",
    "asao35",
    "asahwh",
    "asadr9",
    "asadkv",
    "asayl7",
    "asaj06",
    "asafqo",
    "asana8",
    "asabdi",
    "asaalq",
    "asa0jh",
    "asaeyw",
    "asaa16",
    "asarm7",
    "asagcn",
    "asaos9",
    "asacvh",
    "asayq8",
    "asadvy",
    "asado6",
    "asahjg",
    "asabyf",
    "asaw37",
    "asanex",
    "asaji1",
    "asaah1",
    "asaedx",
    "asa0wg",
    "asaa5v",
    "asackg",
    "asaon6",
    "asaowy",
    "asarp8",
    "asaljg",
    "asa5ef",
    "asaqti",
    "asadz0",
    "asani1",
    "asajex",
    "asas37",
    "asafyf",
    "asae5v",
    "asax27",
    "asaadx",
    "asaeh1",
    "asavp8",
    "asakwy",
    "asakn6",
    "asagkg",
    "asa1mo",
    "asahbn",
    "asayy1",
    "asalwh",
    "asafdi",
    "asaja8",
    "asabqo",
    "asan06",
    "asae16",
    "asaayw",
    "asaxk0",
    "asaelq",
    "asagvh",
    "asaks9",
    "asaccn",
    "asavm7",
    "asahfj",
    "asa1ik",
    "asadzt",
    "asa58e",
    "asasn4",
    "asaniu",
    "asan42",
    "asabuk",
    "asaitk",
    "asae52",
    "asaehu",
    "asaxo4",
    "asak35",
    "asagrl",
    "asavi3",
    "asacgj",
    "asa5ab",
    "asalnc",
    "asa1td",
    "asaqpm",
    "asabhd",
    "asanm5",
    "asaf9j",
    "asajx3",
    "asaay3",
    "asaeuz",
    "asael5",
    "asaiid",
    "asacze",
    "asav04",
    "asagoc",
    "asakj2",
    "asaf43",
    "asab8z",
    "asa7om",
    "asafit",
    "asadsm",
    "asah24",
    "asahos",
    "asauh2",
    "asa2hj",
    "asacns",
    "asac34",
    "asaorm",
    "asaeal",
    "asapo5",
    "asaatj",
    "asam53",
    "asaf0s",
    "asabx2",
    "asajhe",
    "asafm4",
    "asau15",
    "asah6t",
    "asahk3",
    "asadnb",
    "asagfz",
    "asacj3",
    "asac7t",
    "asa2ue",
    "asaml4",
    "asaaie",
    "asaiy2",
    "asae8k",
    "asa7vf",
    "asaf4w",
    "asafi0",
    "asabey",
    "asahvx",
    "asalz1",
    "asadjf",
    "asaho7",
    "asacn7",
    "asaokf",
    "asa2qa",
    "asacwx",
    "asaama",
    "asamh0",
    "asaexg",
    "asap26",
    "asabxv",
    "asaf07",
    "asafmp",
    "asaba9",
    "asahr8",
    "asadwi",
    "asaul6",
    "asahkw",
    "asacjw",
    "asa2ln",
    "asaovi",
    "asacs8",
    "asapk1",
    "asaeeh",
    "asam17",
    "asaapn",
    "asafa9",
    "asabmp",
    "asab07",
    "asafxv",
    "asadbo",
    "asaql6",
    "asaquy",
    "asalr8",
    "asags8",
    "asakvi",
    "asazm6",
    "asagjw",
    "asaepn",
    "asai17",
    "asaaeh",
    "asatk1",
    "asafey",
    "asabi0",
    "asab4w",
    "asa3vf",
    "asalo7",
    "asaqhv",
    "asahz1",
    "asalvx",
    "asagwx",
    "asazp9",
    "asakkf",
    "asagn7",
    "asat26",
    "asaaxg",
    "asaih0",
    "asaema",
    "asabm4",
    "asanhe",
    "asafx2",
    "asab0s",
    "asahgz",
    "asalk3",
    "asal6t",
    "asaq15",
    "asaz05",
    "asag7t",
    "asagj3",
    "asacfz",
    "asaa8k",
    "asamy2",
    "asaeie",
    "asail4",
    "asabit",
    "asa3om",
    "asaf8z",
    "asab43",
    "asaqh2",
    "asadfk",
    "asal24",
    "asahzu",
    "asakrm",
    "asag34",
    "asagns",
    "asazi2",
    "asai53",
    "asaetj",
    "asato5",
    "asaaal",
)
"""The hash tag of each bucket: ``TAGS[b]`` hashes to slot ``64 * b + 32``."""

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INDEX = {char: index for index, char in enumerate(_ALPHABET)}
_SUFFIXES = tuple((a + b).encode() for a in _ALPHABET for b in _ALPHABET)
"""The 4096 two-character endings a drawn token tries."""
_sha256 = hashlib.sha256


def hash_bucket(token_hash: str) -> int:
    """The bucket of a token hash (64 hex characters): its first byte."""
    return int(token_hash[:2], 16)


def user_bucket(user_id: str) -> int:
    """The bucket of a user: the first byte of the SHA-256 of its id."""
    return _sha256(user_id.encode()).digest()[0]


def id_bucket(public_id: str) -> int:
    """The bucket a public id names: its first two characters (12 bits) hold the bucket
    in their top 8; any other id goes by the first byte of its SHA-256."""
    if len(public_id) >= 2 and public_id[0] in _INDEX and public_id[1] in _INDEX:
        return (_INDEX[public_id[0]] << 2) | (_INDEX[public_id[1]] >> 4)
    return _sha256(public_id.encode()).digest()[0]


class Routing:
    """Mints tokens and public ids that lead to a user's bucket (the logic asks the
    ops' ``routing`` for them when it is set)."""

    def __repr__(self) -> str:
        return f"<Routing buckets={BUCKETS}>"

    @staticmethod
    def new_token(user_id: str) -> tuple[str, str]:
        """A URL-safe secret whose hash falls in ``user_id``'s bucket, and that hash:
        ``secrets.token_urlsafe(32)`` (256 random bits, 43 characters) followed by the
        first of 4096 two-character endings that lands there (45 characters)."""
        wanted = user_bucket(user_id)
        while True:
            head = secrets.token_urlsafe(32).encode()
            for tail in _SUFFIXES:
                digest = _sha256(head + tail)
                if digest.digest()[0] == wanted:
                    return (head + tail).decode(), digest.hexdigest()

    @staticmethod
    def new_public_id(user_id: str) -> str:
        """A public id naming ``user_id``'s bucket: two URL-safe characters (12 bits: the
        bucket and 4 random bits), then ``secrets.token_urlsafe(16)`` (128 random bits,
        22 characters) as every public id."""
        value = (user_bucket(user_id) << 4) | secrets.randbelow(16)
        return _ALPHABET[value >> 6] + _ALPHABET[value & 63] + secrets.token_urlsafe(16)
