"""Sans-I/O 9P2000.L protocol: constants, message dataclasses, codec.

Typical use::

    from ninep_server import protocol as p
    frame = p.encode(p.Twalk(fid=1, newfid=2, wnames=[b"etc"], tag=3))
    msg = p.decode(frame)
"""

from .codec import (
    FrameBuffer,
    ProtocolError,
    blob_length,
    decode,
    decode_dirents,
    decode_header,
    dirent_size,
    encode,
    encode_dirents,
    encode_parts,
    message_class,
)
from .constants import *  # noqa: F401,F403 - constants are the public vocabulary
from .messages import *  # noqa: F401,F403
from .messages import ALL_MESSAGES, Dirent, Message, Qid
