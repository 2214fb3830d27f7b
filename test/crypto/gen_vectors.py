#!/usr/bin/env python3
"""Independent generator for test/vectors/dstor-crypto.json.

Written in Python (hashlib, hmac, `cryptography`) on purpose: the vectors must
not come from the TypeScript code they test. The wallet address is filled in
from ethers by the TS test's first run (--address flag) because Python has no
secp256k1 here. Usage: python3 test/crypto/gen_vectors.py [--address 0x...]
"""
import hashlib, hmac, json, math, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SALT = b"dstor/v1"

def hkdf(ikm, salt, info, n=32):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest(); out += t; i += 1
    return out[:n]

def label(s):
    b = s.encode("ascii"); assert 1 <= len(b) <= 32
    return b + b"\0" * (32 - len(b))

def u64(n): return struct.pack(">Q", n)

PHRASE = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title"
seed = hashlib.pbkdf2_hmac("sha512", PHRASE.encode(), b"mnemonic", 2048)
keys = {k: hkdf(seed, SALT, label(l)).hex() for k, l in [("contentRootKey", "content-root"), ("metadataKey", "metadata"), ("pieceIdKey", "piece-id"), ("libp2pIdentitySeed", "libp2p-identity")]}

file_key = bytes(range(0x00, 0x20)); file_id = bytes(range(0xa0, 0xb0)); salt = bytes(range(0xb0, 0xc0)); seg_index = 7
seg_id = file_id + u64(seg_index)
seg_key = hkdf(file_key, SALT, label("segment") + u64(seg_index) + salt)
piece_number = 3
piece_id = hkdf(bytes.fromhex(keys["pieceIdKey"]), SALT, label("piece-id") + seg_id + salt + struct.pack(">H", piece_number))

BLOCK = 65536
def seal(key, sid, pt):
    n = max(1, math.ceil(len(pt) / BLOCK)); out = b""
    for b in range(n):
        out += AESGCM(key).encrypt(b"\0\0\0\0" + u64(b), pt[b * BLOCK:(b + 1) * BLOCK], sid + u64(b) + bytes([1 if b == n - 1 else 0]))
    return out

short_pt = b"dstor: the quick brown fox"
two_block_pt = bytes((i * 7 + 3) & 0xff for i in range(BLOCK + 5))
sealed_two = seal(seg_key, seg_id, two_block_pt)

def H(b): return hashlib.sha256(b).digest()
def pattern(n): return bytes(i % 251 for i in range(n))
def levels(leaf_hashes):
    lv = [leaf_hashes]
    while len(lv[-1]) > 1:
        cur = lv[-1]; nxt = []
        for j in range(0, len(cur), 2):
            nxt.append(H(b"\x01" + cur[j] + cur[j + 1]) if j + 1 < len(cur) else cur[j])
        lv.append(nxt)
    return lv
def tree(data):
    n = max(1, math.ceil(len(data) / 1024))
    return levels([H(b"\x00" + data[i * 1024:(i + 1) * 1024]) for i in range(n)])
def multiproof(lv, lo, hi):
    proof = []; n = len(lv[0]); d = 0
    while n > 1:
        if lo % 2 == 1: proof.append(lv[d][lo - 1])
        if hi % 2 == 1 and hi < n: proof.append(lv[d][hi])
        lo //= 2; hi = (hi + 1) // 2; n = (n + 1) // 2; d += 1
    return proof

sizes = [0, 1, 1024, 1025, 2049, 3073, 5121, 7000]
roots = {str(s): tree(pattern(s))[-1][0].hex() for s in sizes}
t6 = tree(pattern(5121)); t7 = tree(pattern(7000))

pieces = []
for pn, size in [(0, 3073), (1, 1025), (2, 0)]:
    pid = hkdf(bytes.fromhex(keys["pieceIdKey"]), SALT, label("piece-id") + seg_id + salt + struct.pack(">H", pn))
    pieces.append({"pieceId": pid.hex(), "pieceRoot": roots[str(size)], "size": size})
srt = sorted(pieces, key=lambda p: bytes.fromhex(p["pieceId"]))
deal_leaves = [H(b"\x02" + bytes.fromhex(p["pieceId"]) + bytes.fromhex(p["pieceRoot"]) + u64(p["size"])) for p in srt]
dl = levels(deal_leaves)

address = None
if "--address" in sys.argv: address = sys.argv[sys.argv.index("--address") + 1]

out = {
  "comment": "dstor crypto vectors; generated independently by test/crypto/gen_vectors.py; shown in docs/formats.md",
  "phrase": PHRASE, "seed": seed.hex(), "walletPath": "m/44'/60'/0'/0/0", "walletAddress": address, "keys": keys,
  "segment": {"fileKey": file_key.hex(), "fileId": file_id.hex(), "segmentIndex": seg_index, "salt": salt.hex(), "segmentId": seg_id.hex(), "segmentKey": seg_key.hex()},
  "pieceId": {"pieceIdKey": keys["pieceIdKey"], "segmentId": seg_id.hex(), "salt": salt.hex(), "pieceNumber": piece_number, "pieceId": piece_id.hex()},
  "aead": {"key": seg_key.hex(), "segmentId": seg_id.hex(),
           "short": {"plaintextAscii": short_pt.decode(), "sealed": seal(seg_key, seg_id, short_pt).hex()},
           "empty": {"sealed": seal(seg_key, seg_id, b"").hex()},
           "twoBlocks": {"plaintextPattern": "byte i = (7*i + 3) mod 256", "plaintextLength": len(two_block_pt), "sealedLength": len(sealed_two),
                          "sealedSha256": H(sealed_two).hex(), "block1Sealed": sealed_two[BLOCK + 16:].hex()}},
  "merkle": {"pattern": "byte i = i mod 251", "roots": roots,
             "proof": {"size": 5121, "leafCount": 6, "index": 4, "proof": [h.hex() for h in multiproof(t6, 4, 5)]},
             "multiproof": {"size": 7000, "leafCount": 7, "startLeaf": 3, "endLeaf": 6, "proof": [h.hex() for h in multiproof(t7, 3, 6)]}},
  "deal": {"pieces": pieces, "sortedPieceIds": [p["pieceId"] for p in srt], "leafHashes": [h.hex() for h in deal_leaves], "root": dl[-1][0].hex(),
           "proofIndex": 1, "proof": [h.hex() for h in multiproof(dl, 1, 2)], "emptyRoot": "00" * 32},
}
json.dump(out, open(__file__.replace("test/crypto/gen_vectors.py", "test/vectors/dstor-crypto.json"), "w"), indent=2)
print(json.dumps({"roots": roots, "address": address}, indent=1))
