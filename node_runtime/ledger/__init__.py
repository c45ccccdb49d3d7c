"""The tamper-evident processing log: a Merkle tree over every record, in commit order.

``merkle``: RFC 6962/9162 hashing and proofs; ``leaves``: what of a record is hashed;
``checkpoints``: signed tree heads; ``appending``: leaves written with their records;
``tree``: the tree of one node read from the store; ``verification``: `knooppunt log verify`.
"""
