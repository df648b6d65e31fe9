"""Bitcoin address checks: base58check (P2PKH, P2SH) and bech32/bech32m segwit (BIP 173, BIP 350)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {c: i for i, c in enumerate(BASE58_ALPHABET)}
BECH32_ALPHABET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {c: i for i, c in enumerate(BECH32_ALPHABET)}


def base58_error(s: str) -> str | None:
    """None when s is a valid base58check P2PKH/P2SH mainnet address, else what is wrong."""
    if not 25 <= len(s) <= 34:
        return "base58 addresses have 25-34 characters"
    number = 0
    for c in s:
        digit = _BASE58_INDEX.get(c)
        if digit is None:
            return f"{c!r} is not a base58 character"
        number = number * 58 + digit
    zeros = len(s) - len(s.lstrip("1"))  # each leading '1' is a leading zero byte
    raw = b"\x00" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")
    if len(raw) != 25:
        return "does not decode to 25 bytes"
    payload, checksum = raw[:21], raw[21:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        return "bad base58check checksum"
    if (payload[0], s[0]) not in ((0x00, "1"), (0x05, "3")):
        return "version byte is not P2PKH (1...) or P2SH (3...)"
    return None


_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3


def _bech32_polymod(values: Iterable[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_BECH32_GENERATOR):
            if (top >> i) & 1:
                chk ^= generator
    return chk


def bech32_error(s: str) -> str | None:
    """None when s is a valid bech32/bech32m segwit mainnet address (BIP 173, BIP 350), else what is wrong."""
    if s != s.lower() and s != s.upper():
        return "mixed case"
    s = s.lower()
    if not s.startswith("bc1"):
        return "segwit addresses start with bc1"
    if not 14 <= len(s) <= 90:
        return "segwit addresses have 14-90 characters"
    data: list[int] = []
    for c in s[3:]:
        digit = _BECH32_INDEX.get(c)
        if digit is None:
            return f"{c!r} is not a bech32 character"
        data.append(digit)
    hrp_expanded = [3, 3, 0, 2, 3]  # "bc": high bits, 0, low bits
    const = _bech32_polymod(hrp_expanded + data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        return "bad bech32 checksum"
    version, program5 = data[0], data[1:-6]
    if version > 16:
        return "witness version above 16"
    # Regroup 5-bit words into bytes; leftover bits must be fewer than 5 and all zero.
    acc = bits = 0
    program: list[int] = []
    for word in program5:
        acc = (acc << 5) | word
        bits += 5
        if bits >= 8:
            bits -= 8
            program.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc << (8 - bits)) & 0xFF:
        return "bad padding in witness program"
    if not 2 <= len(program) <= 40:
        return "witness program must be 2-40 bytes"
    if version == 0 and len(program) not in (20, 32):
        return "version 0 witness program must be 20 or 32 bytes"
    if (const == _BECH32_CONST) != (version == 0):
        return "checksum variant does not match witness version (bech32 for v0, bech32m after)"
    return None
